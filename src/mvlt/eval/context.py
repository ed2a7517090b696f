"""What every evaluation task shares: the model on its device, the precision, and cached inputs.

Scoring 1,000 queries x 101 candidates x 2 directions means ~200,000 forward passes over a few
thousand distinct images and texts, so each image is decoded and prepared once (kept as uint8,
4x smaller than float, within a memory bound, or read from the decoded-image cache on disk) and
each text is tokenized once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.batches import pad_sequences
from ..data.image_cache import ImageCache
from ..data.images import prepare_image
from ..runtime import Precision, Workload

log = logging.getLogger("mvlt.eval")

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class EvalContext:
    """The model, the catalogue and how inputs are made; tasks read their inputs through it.

    ``image(row)`` is the prepared ``3 x S x S`` float image of catalogue row ``row``;
    ``token_ids(row)`` its text as ``[CLS] ... [SEP]`` ids, cut to the model's text length.
    """

    model: Any
    catalogue: Any
    tokenizer: Any
    device: torch.device
    precision: str = "fp32"
    image_size: int = 256
    resize: str = "pad"
    batch_size: int = 64
    cache_bytes: int = 2 << 30
    progress: bool = False
    image_cache: ImageCache | None = None
    """Decoded-image cache of ``catalogue`` at ``image_size`` on disk: read, not decoded, and not
    copied into the memory cache (the mapped file is one already)."""
    _images: OrderedDict[int, torch.Tensor] = field(default_factory=OrderedDict, repr=False)
    _image_bytes: int = field(default=0, repr=False)
    _tokens: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.image_cache is not None:
            self.image_cache.check(self.catalogue, self.image_size, self.resize)

    # ------------------------------------------------------------------------------- precision
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast when the precision is bf16, else nothing (plain fp32)."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def scoring_workload(self, scorers: Sequence[str]) -> Workload:
        """What ``--precision auto`` times on a CPU with native bf16: a batch of the first rows
        through the passes the retrieval ``scorers`` make (ITM on pairs, ITC embeddings), which
        take most of an evaluation's time."""
        rows = list(range(min(self.batch_size, len(self.catalogue))))
        itc = any(s != "itm" for s in scorers)

        def run(precision: Precision) -> None:
            images, ids, mask = self.batch(rows, rows)
            with torch.inference_mode(), precision.autocast():
                self.model.match_score(images, ids, mask)
                if itc:
                    self.model.encode_images(images)
                    self.model.encode_texts(ids, mask)

        config = json.dumps(self.model.config.to_dict(), sort_keys=True, default=str)
        shape = {
            "model": hashlib.sha256(config.encode()).hexdigest()[:12],
            "image_size": self.image_size,
            "batch": len(rows),
            "scorers": ",".join(scorers),
        }
        return Workload("evaluation", shape, run)

    # ---------------------------------------------------------------------------------- inputs
    def pixels(self, row: int) -> torch.Tensor:
        """Prepared image of ``row`` as uint8 (exact: prepared pixels are k/255), cached."""
        if self.image_cache is not None:
            return torch.from_numpy(np.array(self.image_cache.pixels(row))).permute(2, 0, 1)
        cached = self._images.get(row)
        if cached is not None:
            self._images.move_to_end(row)
            return cached
        img = prepare_image(self.catalogue[row].image, self.image_size, resize=self.resize)
        packed = img.mul(255.0).round_().to(torch.uint8)
        self._images[row] = packed
        self._image_bytes += packed.numel()
        while self._image_bytes > self.cache_bytes and len(self._images) > 1:
            _, evicted = self._images.popitem(last=False)
            self._image_bytes -= evicted.numel()
        return packed

    def image(self, row: int) -> torch.Tensor:
        """Prepared float image of ``row`` in [0, 1]."""
        return self.pixels(row).float().div_(255.0)

    def token_ids(self, row: int) -> list[int]:
        ids = self._tokens.get(row)
        if ids is None:
            self.tokenize_rows([row])
            ids = self._tokens[row]
        return ids

    def tokenize_rows(self, rows: Sequence[int]) -> None:
        """Tokenize the texts of ``rows`` not seen yet, in one batch call."""
        todo = sorted({int(r) for r in rows} - self._tokens.keys())
        if not todo:
            return
        limit = int(self.model.config.max_text_len)
        encoded = self.tokenizer.encode_batch([self.catalogue.texts[r] for r in todo])
        for row, ids in zip(todo, encoded):
            if len(ids) > limit:  # keep [CLS] ... and end with [SEP], as the tokenizer would
                ids = [*ids[: limit - 1], self.tokenizer.sep_id]
            self._tokens[row] = list(ids)

    def texts(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, right-padded to the longest text of ``rows``."""
        seqs = [self.token_ids(r) for r in rows]
        ids = pad_sequences(seqs, self.tokenizer.pad_id)
        return ids, pad_sequences([[1] * len(s) for s in seqs], 0, ids.shape[1])

    def batch(self, image_rows: Sequence[int], text_rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """``(images, input_ids, attention_mask)`` of the given rows, on the model's device
        (pixels travel as uint8: 4x less to copy to a GPU)."""
        return (self.images(image_rows), *self.text_batch(text_rows))

    def images(self, rows: Sequence[int]) -> torch.Tensor:
        """``B x 3 x S x S`` float images of ``rows`` on the model's device."""
        pixels = torch.stack([self.pixels(r) for r in rows]).to(self.device, non_blocking=True)
        return pixels.float().div_(255.0)

    def text_batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` of ``rows`` on the model's device."""
        ids, mask = self.texts(rows)
        return ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)

    def batches(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.batch_size):
            yield slice(start, min(start + self.batch_size, n))
