"""What one evaluation is asked (:class:`EvalOptions`) and what it found (:class:`EvalRun`).

Its own module so that :mod:`.runner`, which fills a run, and :mod:`.report`, which renders it,
both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..exits import UsageError
from ..masking import IMAGE_MASK_STRATEGIES
from .generation import GenerationOutcome
from .recognition import RecognitionOutcome
from .retrieval import RetrievalOutcome, RetrievalProtocol

ITM_SCORE_WORDS = {
    "log_odds": "ITM log-odds logit[match] - logit[no match], head in fp32 (ranks as match_probability)",
    "probability": "ITM match probability (model.match_probability)",
}
"""The ``itm_score`` choices, in the words the protocol records."""


@dataclass
class EvalOptions:
    """Everything that decides the numbers (recorded in ``metrics.json["protocol"]``)."""

    retrieval: RetrievalProtocol = field(default_factory=RetrievalProtocol)
    candidates_file: str | None = None
    """Re-run these candidate lists instead of sampling (``--candidates``)."""
    score: str = "auto"
    """Retrieval scorers: ``auto`` (every one the checkpoint supports, the best first: ``itc+itm``,
    ``itc``, ``itm`` with ITC heads, else ``itm``), one of them, or a comma list; the first gives
    the headline metric names, each also gets its own prefixed names."""
    rerank_top: int = 16
    """``itc+itm``: how many of the ITC order's best candidates ITM re-ranks."""
    itm_score: str = "log_odds"
    """What the ITM scorer outputs: ``log_odds`` (fp32 head, no saturation) or ``probability``."""
    mirror: bool = False
    """ITC: embed each photo together with its mirror image (the normalised sum of the two)."""
    hub_bank: int = 0
    """ITC: subtract each candidate's pull on this many rows of a bank catalogue (``--hub-bank``,
    the training split; :mod:`.hubs`) before the shortlist and the ITM fusion. 0: off."""
    seed: int = 0
    """Seeds the recognition and MIG image samples and the MIG masks (retrieval has its own)."""
    batch_size: int | None = None
    """Pairs / images per forward pass. ``None``: 8 on CPU (measured fastest there: large batches
    spend their time allocating activations), 128 on CUDA."""
    precision: str = "auto"
    device: str = "auto"
    image_size: int | None = None
    """Evaluation image size (default: the size the model was built for)."""
    resize: str = "pad"
    recognition_items: int | None = None
    """Classify this many items drawn with the seed (None: every item of the split)."""
    mig_images: int = 64
    mig_strategies: tuple[str, ...] = IMAGE_MASK_STRATEGIES
    mask_ratio: float = 0.5
    mask_unit: int = 16
    mig_text: bool = True
    examples: int = 4
    """Examples per figure in the report."""
    cache_mb: int = 2048
    """Memory bound of the prepared-image cache (in memory, when ``image_cache`` is off)."""
    image_cache: str = "auto"
    """Decoded-image cache on disk (:mod:`mvlt.data.image_cache`): ``auto``, ``off`` or a folder,
    as ``TrainConfig.image_cache``; the same pixels either way."""
    progress: bool = False
    training_logs: tuple[str, ...] = ()
    """``metrics.jsonl`` files of the training runs behind the checkpoint: the report draws their
    learning curves."""
    checkpoint: str | None = None
    """Where the model came from (for the record only)."""
    training_data: dict[str, Any] | None = None
    """The audit of the training split (:func:`mvlt.data.audit.audit`), for the record only."""

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.mig_images < 1:
            raise UsageError(f"--mig-images must be >= 1, got {self.mig_images}")
        if self.recognition_items is not None and self.recognition_items < 1:
            raise UsageError(f"--recognition-items must be >= 1, got {self.recognition_items}")
        if not 0.0 < self.mask_ratio <= 1.0:
            raise UsageError(f"--mask-ratio must be in (0, 1], got {self.mask_ratio}")
        unknown = [s for s in self.mig_strategies if s not in IMAGE_MASK_STRATEGIES]
        if self.itm_score not in ITM_SCORE_WORDS:
            raise UsageError(f"--itm-score must be one of {tuple(ITM_SCORE_WORDS)}, got {self.itm_score!r}")
        if self.rerank_top < 1:
            raise UsageError(f"--rerank-top must be >= 1, got {self.rerank_top}")
        if self.hub_bank < 0:
            raise UsageError(f"--hub-bank must be >= 0 (0: off), got {self.hub_bank}")
        if unknown or not self.mig_strategies:
            raise UsageError(f"--strategies: unknown {unknown}; choose from {IMAGE_MASK_STRATEGIES}")


@dataclass
class EvalRun:
    """One evaluation: inputs, outcomes per task and the flat metrics; what the report renders."""

    model: Any
    catalogue: Any
    options: EvalOptions
    protocol: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    retrieval: RetrievalOutcome | None = None
    recognition: RecognitionOutcome | None = None
    generation: GenerationOutcome | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    scorers: tuple[str, ...] = ("itm",)
    bank: Any = None
    """The catalogue the hub correction's bank is drawn from (``EvalOptions.hub_bank``)."""
