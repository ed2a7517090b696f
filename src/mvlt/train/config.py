"""``TrainConfig``: every choice of a pre-training or fine-tuning run, read from YAML/JSON + flags.

Where each default comes from is written next to it, as one of:

- **paper**: Ji et al. 2023, §4.1 (what the paper states);
- **released**: the authors' released training code, used where the paper is silent (SPEC §4);
- **ours**: a choice of this project, with the reason.

The resolved configuration of every run is written to ``<out>/config.yaml`` so a run can be
repeated or resumed from it alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.augment import check_augmentations
from ..exits import UsageError
from ..model.config import OBJECTIVES
from .teachers.sources import LOSS_OF_SOURCE, PAIR_LOSSES, RAW_WIDTHS, parse_sources

TASKS = ("pretrain", "finetune")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INPUT_SCHEDULES = ("alternate", "masked", "clean")
ITM_NEGATIVES = ("itc", "random", "hard")
DEVICES = ("auto", "cpu", "cuda")

RECIPES = ("mvlt", "paper")
_NO_HEADS = {"category": 0.0, "subcategory": 0.0, "tags": 0.0, "tags_text": 0.0}
PRETRAIN_WEIGHTS = {
    "mvlt": {"itc": 1.0, "mir": 1.0, "itm": 3.0, "mlm": 1.0, **_NO_HEADS},
    "paper": {"itc": 0.0, "mir": 10.0, "itm": 1.0, "mlm": 1.0, **_NO_HEADS},
}
"""Pre-training weights by recipe. ``paper``: eq. (8), 10·MIR + ITM + MLM. ``mvlt`` (ours): ITC 1,
ITM 3, MLM 1, MIR 1 (docs/DESIGN.md measures the choice). Recognition heads are not
trained during pre-training by default (``objectives`` can add them; on H&M they cost retrieval
about 20 R@5 points: docs/RESULTS.md)."""
FINETUNE_WEIGHTS = {"itc": 0.0, "mir": 0.0, "itm": 0.0, "mlm": 0.0, "category": 1.0, "subcategory": 1.0,
                    "tags": 0.0, "tags_text": 0.0}  # fmt: skip
"""Released code: the two recognition cross-entropies, weight 1 each, on clean inputs. With
``labels`` the tag heads and their text twins (weight 1 each) replace them: see ``TrainConfig.labels``."""


class ConfigError(UsageError):
    """A configuration file or value that cannot be used; the message names the key and file."""


@dataclass
class TrainConfig:
    """One training run. ``task`` selects pre-training or fine-tuning defaults (loss weights,
    input schedule, dataset); every other field means the same for both."""

    task: str = "pretrain"
    recipe: str = "mvlt"
    """``mvlt`` (ours): align before fusing. ITC on the unimodal passes, ITM on ITC-mined hard
    negatives with the fused match head, MLM and MIR on a masked joint pass. ``paper``: exactly
    the paper's MIR + ITM + MLM at 10 / 1 / 1, random ITM negatives from the data, the [CLS] ITM
    head, no ITC heads, the released alternating input schedule. Fine-tuning keeps ``init``'s heads."""

    # ------------------------------------------------------------------------------ model
    model: str = "mvlt_tiny"
    """Registered variant (``mvlt.list_models()``); ignored by fine-tuning, which takes ``init``'s."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """``MVLTConfig`` fields to change, e.g. ``{text_dropout: 0, drop_path_rate: 0}``."""
    init: str | None = None
    """Fine-tuning: the pre-trained checkpoint directory (required). Pre-training: optional
    starting weights (e.g. a previous run); its tokenizer is reused."""
    freeze_encoder: bool = False
    """Fine-tuning: train only the recognition heads. Default off, as in the paper (end to end)."""
    fit_heads: bool = False
    """After the last step, fit each recognition head's output layer as a linear probe on the
    frozen encoder's [CLS] of the training pairs (ours; ``mvlt.train.head_fit``). Needs the
    ``category`` or ``subcategory`` objective (the heads)."""
    fit_heads_teacher: float = 0.0
    """With ``fit_heads``: the weight of the teachers' probabilities in the fit's targets, each
    row's label mixed with an out-of-fold linear probe's output on both teachers' features
    (``teachers.distill.recognition_targets``; needs the teachers extra). 0: the labels alone.
    0.6 was chosen on the validation slice (docs/RESULTS.md)."""
    labels: list[str] | None = None
    """Catalogue columns to train one tag head each for (``[colour, pattern]``, ours). The heads
    read the image-only pass, so they tag a photo without its description; their label maps are
    the training split's values, saved with the checkpoint. Rows without a value are left out of
    that head's loss and counted in ``train.log``. Given, the ``tags`` objective and its text
    twin ``tags_text`` (text-only heads, image + text's second expert) weigh 1 each and, when
    fine-tuning, the two recognition heads (which read the text) are off unless ``loss_weights``
    or ``objectives`` ask for them. ``objectives`` naming ``tags`` trains ``tags_text`` too unless
    ``loss_weights`` sets its weight."""
    augment: list[str] | None = None
    """Geometric augmentation of the clean images, drawn per step from the run's seed (``flip``,
    ``crop``: ``mvlt.data.augment``; ours, off by default as in the paper). Not with MIR, whose
    targets are the unaugmented pixels."""
    sentence_drop: float = 0.0
    """Text augmentation (ours, off by default): each sentence of a training text after the first
    (the product name) is left out with this probability, drawn per epoch from the run's seed and
    keyed by the text (``mvlt.data.augment.drop_sentences``). Shows the text pass the short texts
    shoppers type. Must be in [0, 1)."""

    # ------------------------------------------------------------------------------- data
    data: str = "synthetic"
    """``synthetic``, a manifest (CSV/JSONL or its folder) or a Fashion-Gen ``.h5`` / folder."""
    split: str | None = "train"
    """Split the run trains on (``None``: every row)."""
    data_options: dict[str, Any] = field(default_factory=dict)
    """Extra options for ``open_catalogue`` (e.g. ``{num_products: 500}`` for synthetic)."""
    skip_bad_rows: bool = False
    """Leave out catalogue rows that cannot be used (missing or undecodable image, empty text, ...),
    counted by reason in ``train.log``, instead of stopping. Every image is then decoded at open,
    so no bad image can stop the run later."""
    tokenizer: str | None = None
    """``None``: the checkpoint's (``init``) or else BERT-base-uncased (released); a ``vocab.txt``
    or a saved tokenizer folder; or ``train`` to learn a WordPiece vocabulary on the training texts."""
    vocab_size: int = 1000
    """Size of the vocabulary learnt by ``tokenizer: train`` (ours: small, for fast CPU demos)."""
    max_text_len: int = 128
    """L, tokens per text including [CLS]/[SEP] (paper)."""
    image_size: int | None = None
    """Training image side. ``None``: the model's (256 for ``mvlt_tiny``, paper) / ``init``'s."""
    resize: str = "pad"
    """How images are made square: ``pad`` (ours, keeps aspect) or ``crop_stretch`` (released)."""
    workers: int = 0
    """DataLoader worker processes (0: load in the training process)."""
    image_cache: str = "auto"
    """Decoded-image cache (:mod:`mvlt.data.image_cache`, ours): ``auto`` decodes every image once
    into a memory-mapped uint8 file under ``$MVLT_CACHE_DIR/images`` or ``~/.cache/mvlt/images`` (manifests
    and Fashion-Gen; the synthetic catalogue is drawn in memory and never cached), ``off`` decodes
    every epoch, any other value is the cache folder. The samples are the same either way."""

    # ------------------------------------------------------------------- length, batches
    batch_size: int = 64
    """Global batch per optimizer step, over all processes and accumulation steps, so a run
    gives the same result on 1 or N processes. Released: 150 per GPU × 8 = 1200 (paper); ours
    64, which fits a CPU run. Must be divisible by world size × ``accumulation``."""
    batch_groups: int = 0
    """Build every global batch from blocks of this many items that share a sub-category (the
    leftovers of each sub-category shuffled together into mixed blocks): ITC's in-batch negatives
    and the ITM negatives it mines are then mostly of the same kind of garment, the negatives the
    1 + K protocol (and a shopper's query) must tell apart. 0: one uniform shuffle (the paper's).
    Must divide ``batch_size``."""
    itc_memory: int = 0
    """ITC's extra negatives: the embeddings of the last this many global rows, detached (cross-
    batch memory, XBM; ours, 0 = off as in the paper). Saved with each checkpoint."""
    itc_memory_start: float = 0.5
    """The fraction of the run's steps after which the memory fills and is used. XBM starts its
    memory once the features drift slowly; started at step 0 here, ITC fell to chance."""
    kd_decay_start: float = 1.0
    """Teacher annealing (BAM!, Clark et al. 2019): from this fraction of the run's steps on, the
    ``kd_*`` weights fall linearly to 0 at the last step, so that a student that has overtaken the
    teacher pair (the pair retrieves worse than our students) is not held to it to the end.
    1: constant weights."""
    ema_decay: float = 0.0
    """Save an exponential moving average of the weights instead of the last step's (Polyak
    averaging, :mod:`mvlt.train.average`): each step the average keeps this share of itself, a
    memory of about ``1 / (1 - d)`` steps (before that many steps, the plain mean of all so far).
    Training reads the raw weights, which each step checkpoint keeps beside the average. 0: off
    (the paper's). At 0.998 it cost 11-13 R@5 points in a 1,000-step run (docs/RESULTS.md)."""
    accumulation: int = 1
    """Micro-batches per optimizer step (per process)."""
    steps: int | None = None
    """Optimizer steps. When given, it wins over ``epochs``."""
    epochs: float | None = None
    """Passes over the training split (an epoch is ``len(split) // batch_size`` steps; the last
    partial batch is dropped). Released: 150. Default when neither is given: 1 epoch (ours)."""
    max_minutes: float | None = None
    """Wall-clock budget of one invocation: when it is spent, the run finishes its step, saves a
    checkpoint and stops (exit 0, ``--resume`` continues). The schedule still spans ``steps``.
    Each invocation gets the whole budget, a resumed one too (ours: a job under a scheduler's time
    limit resumes with the same flag and the same limit)."""
    fit_minutes: float | None = None
    """Training wall minutes the run should fill, over all invocations: ``steps`` (or ``epochs``)
    is the first guess, e.g. a planner's; from the first minute on the trainer measures its real
    step rate and re-fits the remaining steps and the cosine horizon whenever the projected end is
    off by more than 10 % (ours; :mod:`mvlt.train.budget`). The length then depends on the
    machine's speed, so two runs differ; a resumed run keeps the length it was fitted to."""

    # --------------------------------------------------------------------------- optimiser
    lr: float | None = None
    """Peak learning rate. ``None``: ``base_lr × batch_size / 512`` (released). The paper states
    2.5e-3 at batch 1200."""
    base_lr: float = 2.5e-4
    """Released: the lr for a global batch of 512, scaled linearly."""
    min_lr: float = 1e-5
    """Floor of the cosine decay (released). Capped at the peak lr for very small batches."""
    warmup_steps: int | None = None
    """Linear warm-up length in steps; ``None``: ``warmup_ratio`` of the run."""
    warmup_ratio: float = 5 / 150
    """Released: 5 warm-up epochs of 150, the same fraction of any run length."""
    weight_decay: float = 0.01
    """Released 0.01 (paper 1e-4); never on biases, norms and position embeddings (released)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas (paper, released)."""
    eps: float = 1e-8
    """AdamW epsilon (PyTorch default; neither source changes it)."""
    clip_grad_norm: float | None = None
    """Clip the global gradient norm to this (``None``: off; neither source clips)."""

    # ------------------------------------------------------------------------- teachers
    teachers: list[str] | None = None
    """Pretrained knowledge brought in at training time (ours; ``mvlt.train.teachers``): any of
    ``text-init`` (word embeddings from all-MiniLM-L6-v2's), ``text`` / ``image`` (the unimodal ITC
    embeddings mimic a frozen teacher pair's: MiniLM, EfficientNet-Lite0 ImageNet), ``cross`` (soft
    ITC targets from the pair's similarities), ``tags`` (the image tag heads learn an ImageNet
    linear probe's out-of-fold class probabilities, ``kd_tags``; needs ``labels``), ``text-raw`` /
    ``image-raw`` (the unimodal features, through training-only projections, mimic each teacher's
    own standardised features), or ``[all]`` (the four before ``tags``). Each loss term weighs 1
    unless ``loss_weights`` says otherwise (``kd_text``, ``kd_image``, ``kd_cross``, ``kd_tags``,
    ``kd_text_raw``, ``kd_image_raw``). Needs the optional
    teacher packages (``make teachers``); the trained model runs without them."""
    teacher_cache: str | None = None
    """Where teacher features and the fitted teacher pair are kept (``None``: ``$MVLT_CACHE_DIR/teachers``
    or ``~/.cache/mvlt/teachers``)."""

    # --------------------------------------------------------------------------- objectives
    input_schedule: str | None = None
    """Input of the joint MIR/MLM pass: ``alternate`` (released: even steps clean image, odd steps
    masked), ``masked`` (every step) or ``clean``. ``None``: ``alternate`` for the paper's
    pre-training (its ITM shares that pass), ``masked`` for ours (ITM and ITC see clean inputs),
    ``clean`` for fine-tuning."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Weights by objective (``itc, mir, itm, mlm, category, subcategory``); missing ones take the
    defaults of the task and recipe (pre-training ``mvlt`` 1/1/3/1/0/0, ours; ``paper``
    0/10/1/1/0/0, eq. 8; fine-tuning 0/0/0/0/1/1, released)."""
    objectives: list[str] | None = None
    """Keep only these objectives (the others get weight 0; a listed one whose weight is 0 gets 1),
    e.g. ``[itm, mlm]`` for Table 3(d)."""
    mask_strategy: str = "random_grid"
    """MIR mask: ``random_grid`` (paper default), ``grid``, ``stroke``, ``center``."""
    mask_ratio: float = 0.5
    """r_v, fraction of the image masked (paper)."""
    mask_unit: int = 16
    """Mask unit in pixels, α·P = 4·4 (paper)."""
    mlm_prob: float = 0.15
    """r_l, fraction of word-pieces selected for MLM (paper)."""
    itm_negative_prob: float = 0.5
    """Probability that a pair's text is replaced by another product's (paper)."""
    itm_negatives: str | None = None
    """Where ITM negatives come from: ``itc`` (ALBEF: drawn from the global batch in proportion to
    the ITC similarity, texts and images), or the dataset's text replacement, ``random`` (released)
    or ``hard`` (same sub-category). ``None``: ``itc`` when ITC is on, else ``random``."""

    # ------------------------------------------------------------------------ runtime
    precision: str = "auto"
    """``auto``: bf16 autocast on CUDA with bf16; on a CPU with native bf16 (AVX512-BF16/AMX) the
    faster of fp32 and bf16 for this run's training step, timed once and cached per machine
    (``mvlt.runtime``); fp32 on other CPUs, where bf16 matmuls are ~10× slower (measured).
    ``fp16``: CUDA autocast + gradient scaler (released used fp16)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    seed: int = 0
    threads: int | None = None
    """``torch.set_num_threads`` per process (``None``: PyTorch's default)."""
    find_unused_parameters: bool = False
    """DDP option; only needed if a trainable parameter gets no gradient (heads of objectives that
    are switched off are frozen instead, so the default is off)."""

    # ------------------------------------------------------------------ output, logging
    out: str = "runs/pretrain"
    checkpoint_every: int = 500
    """Save a resumable checkpoint every N steps (and always at the end)."""
    keep_checkpoints: int = 3
    """How many step checkpoints to keep (the newest)."""
    log_every: int = 10
    """Write metrics (JSONL, TensorBoard) every N steps."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self._coerce_numbers()
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.model_overrides = dict(self.model_overrides or {})
        self.data_options = dict(self.data_options or {})
        self.loss_weights = {k: float(v) for k, v in (self.loss_weights or {}).items()}
        if self.objectives is not None:
            self.objectives = list(self.objectives)
        if isinstance(self.teachers, str):
            self.teachers = [t for t in self.teachers.split(",") if t.strip()]
        if self.teachers is not None:
            self.teachers = list(self.teachers) or None
        if isinstance(self.labels, str):
            self.labels = [c.strip() for c in self.labels.split(",") if c.strip()]
        if self.labels is not None:
            self.labels = [str(c) for c in self.labels] or None
        if isinstance(self.augment, str):
            self.augment = [a.strip() for a in self.augment.split(",") if a.strip()]
        if self.augment is not None:
            self.augment = [str(a) for a in self.augment] or None

    def _coerce_numbers(self) -> None:
        """Numbers given as text become numbers: YAML 1.1 reads ``1e-3`` (no dot) as a string."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), str(f.type).replace(" | None", "")
            if kind not in ("int", "float") or value is None or isinstance(value, bool):
                continue
            if isinstance(value, int if kind == "int" else (int, float)):
                continue
            try:
                number = float(value)
                if kind == "int":
                    if not number.is_integer():
                        raise ValueError("not a whole number")
                    number = int(value) if isinstance(value, str) and value.strip().isdigit() else int(number)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"config {f.name}={value!r}: expected {kind} ({err})") from None
            setattr(self, f.name, number)

    # ------------------------------------------------------------------------- resolved views
    def resolved_loss_weights(self) -> dict[str, float]:
        """Task defaults, then ``loss_weights``, then ``objectives`` switching the others off."""
        weights = dict(PRETRAIN_WEIGHTS[self.recipe] if self.task == "pretrain" else FINETUNE_WEIGHTS)
        weights.update(dict.fromkeys(LOSS_OF_SOURCE.values(), 0.0))
        if self.labels:
            weights.update(tags=1.0, tags_text=1.0)
            if self.task == "finetune":
                weights.update(category=0.0, subcategory=0.0)
        weights.update({LOSS_OF_SOURCE[s]: 1.0 for s in self.teacher_sources() if s in LOSS_OF_SOURCE})
        weights.update(self.loss_weights)
        if self.objectives is not None:
            asked = set(self.objectives)
            if "tags" in asked and "tags_text" not in self.loss_weights:
                asked.add("tags_text")  # the text heads are saved beside the image heads: train them
            for name in OBJECTIVES:
                if name not in asked:
                    weights[name] = 0.0
                elif not weights[name]:  # asked for, but its weight is 0 (e.g. MLM when fine-tuning)
                    weights[name] = 1.0
        return weights

    def teacher_sources(self) -> list[str]:
        """``teachers`` in canonical order (``all`` expanded); raises on an unknown source."""
        return parse_sources(self.teachers)

    def resolved_input_schedule(self) -> str:
        if self.input_schedule is not None:
            return self.input_schedule
        if self.task == "finetune":
            return "clean"
        return "alternate" if self.recipe == "paper" else "masked"

    def resolved_itm_negatives(self) -> str:
        if self.itm_negatives is not None:
            return self.itm_negatives
        return "itc" if self.resolved_loss_weights()["itc"] else "random"

    def recipe_model_overrides(self) -> dict[str, Any]:
        """``MVLTConfig`` fields the recipe sets for a new model (``model_overrides`` win)."""
        from ..model.config import PAPER_DESIGN

        paper = PAPER_DESIGN if self.recipe == "paper" else {}
        return {**paper, **self.teacher_model_overrides(), **self.model_overrides}

    def teacher_model_overrides(self) -> dict[str, Any]:
        """The projections to the teachers' own features that ``kd_image_raw`` / ``kd_text_raw``
        train (``MVLTConfig.mimic_dims``), when either is on."""
        weights = self.resolved_loss_weights()
        if not any(weights[name] for name in RAW_WIDTHS):
            return {}
        return {"mimic_dims": tuple(width if weights[name] else 0 for name, width in RAW_WIDTHS.items())}

    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.batch_size / 512

    # ---------------------------------------------------------------------------- checking
    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` naming the first bad field; return self."""

        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"config {name}={getattr(self, name)!r}: {why}")

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(f.name, "must be a finite number")
        choices = {"task": TASKS, "recipe": RECIPES, "precision": PRECISIONS, "device": DEVICES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise bad(name, f"choose one of {', '.join(allowed)}")
        if self.input_schedule is not None and self.input_schedule not in INPUT_SCHEDULES:
            raise bad("input_schedule", f"choose one of {', '.join(INPUT_SCHEDULES)}")
        for name in ("batch_size", "accumulation", "checkpoint_every", "keep_checkpoints", "log_every"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise bad("steps", "must be at least 1")
        if self.epochs is not None and self.epochs <= 0:
            raise bad("epochs", "must be positive")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise bad("max_minutes", "must be positive")
        if self.fit_minutes is not None and self.fit_minutes <= 0:
            raise bad("fit_minutes", "must be positive")
        if self.batch_size % self.accumulation:
            raise bad("batch_size", f"must be divisible by accumulation={self.accumulation}")
        for name in ("lr", "min_lr", "base_lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise bad(name, "must not be negative")
        if not 0 <= self.warmup_ratio <= 1:
            raise bad("warmup_ratio", "must be in [0, 1]")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise bad("warmup_steps", "must not be negative")
        if self.lr is not None and self.lr == 0:
            raise bad("lr", "must be positive")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "needs two values in [0, 1)")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise bad("clip_grad_norm", "must be positive (or null to switch clipping off)")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be at least 1")
        if self.workers < 0:
            raise bad("workers", "must not be negative")
        if not isinstance(self.image_cache, str) or not self.image_cache.strip():
            raise bad("image_cache", "must be auto, off or a folder")
        unknown = sorted(set(self.loss_weights) - set(OBJECTIVES))
        if unknown:
            raise bad("loss_weights", f"unknown objective(s) {unknown}; known: {', '.join(OBJECTIVES)}")
        if self.objectives is not None:
            unknown = sorted(set(self.objectives) - set(OBJECTIVES))
            if unknown:
                raise bad("objectives", f"unknown objective(s) {unknown}; known: {', '.join(OBJECTIVES)}")
        try:
            self.teacher_sources()
        except ValueError as err:
            raise bad("teachers", str(err)) from None
        weights = self.resolved_loss_weights()
        if self.recipe == "paper" and any(weights[k] for k in PAIR_LOSSES):
            raise bad(
                "teachers", "the paper's recipe has no ITC embeddings to distil into; use --recipe mvlt"
            )
        if not any(weights.values()):
            raise bad("loss_weights", "every objective has weight 0: nothing to train")
        if weights["kd_tags"] and not self.labels:
            raise bad("teachers", "tags (kd_tags) teaches the tag heads: name their columns with --labels")
        taught = [s for s in self.teacher_sources() if s in LOSS_OF_SOURCE]
        silenced = [s for s in taught if not weights[LOSS_OF_SOURCE[s]]]
        if silenced:  # e.g. --teachers text with --objectives itc,itm: the teacher would teach nothing
            losses = ", ".join(LOSS_OF_SOURCE[s] for s in silenced)
            raise bad(
                "teachers", f"{', '.join(silenced)} train(s) {losses}, which objectives or loss_weights "
                f"switch off; add {losses} to --objectives or leave the source out",
            )  # fmt: skip
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise bad("labels", "names a column twice")
        if (weights["tags"] or weights["tags_text"]) and not self.labels:
            raise bad(
                "labels", "objective tags trains one head per column: name them (--labels colour,pattern)"
            )
        if self.labels and not weights["tags"]:
            raise bad("labels", "the tags objective is off, so no tag head would be trained")
        if self.augment:
            try:
                check_augmentations(self.augment)
            except ValueError as err:
                raise bad("augment", str(err)) from None
            if weights["mir"]:
                raise bad(
                    "augment", "MIR reconstructs the unaugmented pixels: switch MIR off or leave augment out"
                )
        if not 0 <= self.sentence_drop < 1:
            raise bad("sentence_drop", "must be in [0, 1) (at 1 only the first sentence would be left)")
        if self.itm_negatives is not None and self.itm_negatives not in ITM_NEGATIVES:
            raise bad("itm_negatives", f"choose one of {', '.join(ITM_NEGATIVES)}")
        if self.itm_negatives == "itc" and not weights["itc"]:
            raise bad("itm_negatives", "'itc' mines negatives from the ITC similarities: switch ITC on")
        if self.task == "finetune" and not self.init:
            raise bad("init", "fine-tuning needs the pre-trained checkpoint (--init DIR)")
        if self.fit_heads and not (weights["category"] or weights["subcategory"]):
            raise bad("fit_heads", "fits the recognition heads: switch category or subcategory on")
        if not 0 <= self.fit_heads_teacher <= 1:
            raise bad("fit_heads_teacher", "must be in [0, 1] (the teachers' share of the targets)")
        if self.fit_heads_teacher and not self.fit_heads:
            raise bad("fit_heads_teacher", "weighs the teachers in the heads' fit: add fit_heads")
        if self.task == "pretrain" and self.freeze_encoder:
            raise bad("freeze_encoder", "only fine-tuning can freeze the encoder")
        if self.image_size is not None and (self.image_size < 32 or self.image_size % 32):
            raise bad("image_size", "must be a positive multiple of 32")
        if not 0 <= self.ema_decay < 1:
            raise bad("ema_decay", "must be in [0, 1) (0: off; 0.998 averages about the last 500 steps)")
        if self.itc_memory < 0:
            raise bad("itc_memory", "must not be negative (0: off)")
        if not 0 <= self.itc_memory_start < 1:
            raise bad("itc_memory_start", "must be a fraction of the run in [0, 1)")
        if not 0 <= self.kd_decay_start <= 1:
            raise bad("kd_decay_start", "must be a fraction of the run in [0, 1] (1: no decay)")
        if self.kd_decay_start < 1 and not any(weights[n] for n in weights if n.startswith("kd_")):
            raise bad("kd_decay_start", "decays the teachers' kd_* losses, and none is on")
        if self.itc_memory and not weights["itc"]:
            raise bad("itc_memory", "adds negatives to ITC: switch ITC on")
        if self.batch_groups < 0:
            raise bad("batch_groups", "must not be negative (0: one uniform shuffle)")
        if self.batch_groups and self.batch_size % self.batch_groups:
            raise bad("batch_groups", f"must divide --batch-size {self.batch_size} (blocks tile the batch)")
        return self

    # ------------------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "configuration") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {err}") from err


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (JSON by ``.json`` suffix, else YAML, a superset)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}"
        ) from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
    return values


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, **defaults: Any
) -> TrainConfig:
    """``defaults`` (e.g. ``task``), then the file at ``path``, then ``overrides`` (CLI flags).

    Unknown keys in the file or the overrides raise :class:`ConfigError` naming them and the file.
    Dotted override keys set one entry of a mapping field (``model_overrides.text_dropout``).
    """
    values: dict[str, Any] = dict(defaults)
    source = "configuration"
    if path is not None:
        values.update(read_config_file(path))
        source = str(path)
    config = TrainConfig.from_dict(values, source)
    if overrides:
        config = apply_overrides(config, overrides, "command line")
    return config


def apply_overrides(
    config: TrainConfig, overrides: dict[str, Any], source: str = "command line"
) -> TrainConfig:
    """A copy of ``config`` with ``overrides`` applied (dotted keys reach into mapping fields)."""
    values = config.to_dict()
    for key, value in overrides.items():
        name, _, sub = key.partition(".")
        if name not in values:
            raise ConfigError(f"{source}: unknown key {name!r}; known keys: {', '.join(sorted(values))}")
        if sub:
            if not isinstance(values[name], dict):
                raise ConfigError(f"{source}: {name!r} is not a mapping, so {key!r} cannot be set")
            values[name] = {**values[name], sub: value}
        else:
            values[name] = value
    return TrainConfig.from_dict(values, source)
