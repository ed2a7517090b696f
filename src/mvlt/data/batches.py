"""From catalogue items to the tensors the model consumes: the pre-training batch and plain pairs.

Reproducibility: every random draw of a sample (ITM coin, negative text, image mask, MLM) comes
from its own ``torch.Generator`` seeded by ``(seed, epoch, index, purpose)``. A sample therefore
does not depend on the number of DataLoader workers, on batch composition, or on which other
objectives are switched on, and a resumed run re-draws exactly the batches it would have drawn.
The epoch lives in shared memory, so :meth:`PretrainDataset.set_epoch` reaches workers that are
already running (``persistent_workers=True``) as well as new ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..masking import IGNORE_INDEX, apply_image_mask, image_mask, mlm_mask
from .augment import drop_sentences
from .catalogue import Catalogue
from .image_cache import ImageCache
from .images import RESIZE_MODES, prepare_image
from .labels import LabelMaps
from .tokenizer import Tokenizer

ITM_NEGATIVES = ("random", "hard")
PRETRAIN_KEYS = ("images", "masked_images", "image_mask", "input_ids", "attention_mask", "mlm_labels",
                 "itm_labels", "category_labels", "subcategory_labels", "index", "product_ids")  # fmt: skip
PAIR_KEYS = ("images", "input_ids", "attention_mask", "category_labels", "subcategory_labels", "index",
             "product_ids")  # fmt: skip
_STREAM_ITM, _STREAM_MASK, _STREAM_MLM, _STREAM_TEXT = 1, 2, 3, 4
_REJECTION_TRIES = 32


def sample_generator(seed: int, epoch: int, index: int, stream: int) -> torch.Generator:
    """A generator for one purpose of one sample, a pure function of its four arguments."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, epoch, index, stream]).generate_state(
        2, np.uint32
    )
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))


def pad_sequences(
    sequences: Sequence[Sequence[int] | torch.Tensor], pad_value: int, length: int | None = None
) -> torch.Tensor:
    """Stack 1-D sequences into ``B x L`` (L = the longest, or ``length``), right-padded."""
    longest = max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), length or longest), pad_value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Tokenize and pad texts to the longest: ``input_ids`` and ``attention_mask`` (``B x L``, long).

    For scoring arbitrary image/text pairs (retrieval candidates) outside a dataset.
    """
    ids = tokenizer.encode_batch(list(texts))
    input_ids = pad_sequences(ids, tokenizer.pad_id)
    attention = pad_sequences([[1] * len(s) for s in ids], 0, input_ids.shape[1])
    return {"input_ids": input_ids, "attention_mask": attention}


def encode_labels(catalogue: Catalogue, label_maps: LabelMaps | None) -> tuple[np.ndarray, np.ndarray]:
    """Category and sub-category ids of every item (-100 if unknown or no maps), in the caller's
    process, so ``label_maps.unknown`` counts every unknown label once and can be reported."""
    n = len(catalogue)
    if label_maps is None:
        return np.full(n, IGNORE_INDEX, dtype=np.int64), np.full(n, IGNORE_INDEX, dtype=np.int64)
    cats = np.fromiter((label_maps.encode_category(c) for c in catalogue.categories), np.int64, n)
    subs = np.fromiter((label_maps.encode_subcategory(s) for s in catalogue.subcategories), np.int64, n)
    return cats, subs


def encode_tags(values: Mapping[str, Sequence[str]], label_maps: LabelMaps) -> np.ndarray:
    """``N x columns`` ids of every row's value of each tag column (``label_maps.tag_columns``
    order): -100 where a row has no value, counted in ``label_maps.tag_unlabelled``."""
    columns = label_maps.tag_columns
    n = len(values[columns[0]]) if columns else 0
    out = np.full((n, len(columns)), IGNORE_INDEX, dtype=np.int64)
    for j, column in enumerate(columns):
        out[:, j] = [label_maps.encode_tag(column, v) for v in values[column]]
    return out


def _with_tags(sample: dict[str, Any], tag_labels: np.ndarray | None, i: int) -> dict[str, Any]:
    if tag_labels is not None:
        sample["tag_labels"] = torch.from_numpy(tag_labels[i].copy())
    return sample


def _stack_tags(batch: dict[str, Any], samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``tag_labels`` (long ``B x columns``) when the samples carry them."""
    if "tag_labels" in samples[0]:
        batch["tag_labels"] = torch.stack([s["tag_labels"] for s in samples])
    return batch


def load_images(
    catalogue: Catalogue,
    indices: Sequence[int],
    image_size: int = 256,
    resize: str = "pad",
    image_cache: ImageCache | None = None,
) -> torch.Tensor:
    """``B x 3 x S x S`` float images of the given catalogue items (e.g. retrieval candidates)."""
    return torch.stack([item_image(catalogue, int(i), image_size, resize, image_cache) for i in indices])


def item_image(
    catalogue: Catalogue, index: int, image_size: int, resize: str, image_cache: ImageCache | None
) -> torch.Tensor:
    """Item ``index``'s float image: from the decoded-image cache when there is one (the same
    bits), else decoded and prepared now."""
    if image_cache is not None:
        return image_cache.image(index)
    return prepare_image(catalogue.load_image(index), image_size, resize)


def _checked_cache(
    image_cache: ImageCache | None, catalogue: Catalogue, image_size: int, resize: str
) -> ImageCache | None:
    if image_cache is not None:
        image_cache.check(catalogue, image_size, resize)
    return image_cache


class PairDataset(Dataset[dict[str, Any]]):
    """Clean image/text pairs for evaluation and fine-tuning (no masking, no ITM negatives).

    Batch with :func:`collate_pairs` (or ``dataset.collate``, which knows the pad id).
    ``image_cache``: as in :class:`PretrainDataset`. ``tag_labels``: :func:`encode_tags`' ids, one
    row per item, batched as ``tag_labels``.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        tokenizer: Tokenizer,
        *,
        label_maps: LabelMaps | None = None,
        image_size: int = 256,
        resize: str = "pad",
        image_cache: ImageCache | None = None,
        tag_labels: np.ndarray | None = None,
    ) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize!r}; choose one of {RESIZE_MODES}")
        self.catalogue, self.tokenizer, self.label_maps = catalogue, tokenizer, label_maps
        self.image_size, self.resize = int(image_size), resize
        self.image_cache = _checked_cache(image_cache, catalogue, self.image_size, resize)
        self.category_labels, self.subcategory_labels = encode_labels(catalogue, label_maps)
        self.tag_labels = tag_labels

    def __len__(self) -> int:
        return len(self.catalogue)

    @property
    def collate(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        return functools.partial(collate_pairs, pad_id=self.tokenizer.pad_id)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        image = item_image(self.catalogue, i, self.image_size, self.resize, self.image_cache)
        return _with_tags({
            "image": image,
            "input_ids": torch.tensor(self.tokenizer.encode(self.catalogue.texts[i]), dtype=torch.long),
            "category_label": int(self.category_labels[i]),
            "subcategory_label": int(self.subcategory_labels[i]),
            "index": i,
            "product_id": self.catalogue.product_ids[i],
        }, self.tag_labels, i)  # fmt: skip


def collate_pairs(samples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, Any]:
    """Stack :class:`PairDataset` samples; text padded to the longest in the batch."""
    ids = [s["input_ids"] for s in samples]
    input_ids = pad_sequences(ids, pad_id)
    return _stack_tags({
        "images": torch.stack([s["image"] for s in samples]),
        "input_ids": input_ids,
        "attention_mask": pad_sequences(
            [torch.ones(len(x), dtype=torch.long) for x in ids], 0, input_ids.shape[1]
        ),
        "category_labels": torch.tensor([s["category_label"] for s in samples], dtype=torch.long),
        "subcategory_labels": torch.tensor([s["subcategory_label"] for s in samples], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "product_ids": [s["product_id"] for s in samples],
    }, samples)  # fmt: skip


class PretrainDataset(Dataset[dict[str, Any]]):
    """Pre-training samples: clean + masked image and mask (MIR), MLM-corrupted text, ITM label.

    Options:
        label_maps: category/sub-category ids for recognition labels (-100 when None or unknown).
        image_size, resize: see :func:`~mvlt.data.images.prepare_image` (256, ``"pad"``).
        mask_strategy, mask_ratio, mask_unit: the MIR mask (``random_grid``, 0.5, 16 px);
            ``mask_images=False`` gives unmasked inputs and an all-False mask.
        mlm, mlm_prob: MLM corruption (on, 15 %); off gives clean ids and all -100 labels.
        itm, itm_negative_prob, itm_negatives: with probability ``itm_negative_prob`` (0.5) the text
            is replaced by the text of a different product (label 0), drawn from the whole
            catalogue (``"random"``) or from the same sub-category (``"hard"``, falling back to
            random when the sub-category has no other product). Texts identical to the item's own
            are never used as negatives. Off: own text, label 1 always.
        seed, epoch: with the catalogue index, they fix every random draw (see module docstring).
        image_cache: an :class:`~mvlt.data.image_cache.ImageCache` of this catalogue at this size
            (images read from it, not decoded; the same tensors), or None.
        sentence_drop: each sentence of the fed text after the first is left out with this
            probability (:func:`~mvlt.data.augment.drop_sentences`; 0: off). The draw is keyed by
            the text, not the row, so rows that share a description still share it (ITC counts
            them as positives by their tokens).

    Batch with :func:`collate_pretrain` (or ``dataset.collate``). MLM applies to whichever text is
    fed (own or negative), as in the released code.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        tokenizer: Tokenizer,
        *,
        label_maps: LabelMaps | None = None,
        image_size: int = 256,
        resize: str = "pad",
        mask_images: bool = True,
        mask_strategy: str = "random_grid",
        mask_ratio: float = 0.5,
        mask_unit: int = 16,
        mlm: bool = True,
        mlm_prob: float = 0.15,
        itm: bool = True,
        itm_negative_prob: float = 0.5,
        itm_negatives: str = "random",
        seed: int = 0,
        epoch: int = 0,
        image_cache: ImageCache | None = None,
        tag_labels: np.ndarray | None = None,
        sentence_drop: float = 0.0,
    ) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize!r}; choose one of {RESIZE_MODES}")
        if itm_negatives not in ITM_NEGATIVES:
            raise ValueError(f"unknown itm_negatives {itm_negatives!r}; choose one of {ITM_NEGATIVES}")
        if not 0.0 <= itm_negative_prob <= 1.0 or not 0.0 <= mlm_prob <= 1.0:
            raise ValueError("itm_negative_prob and mlm_prob must be in [0, 1]")
        if not 0.0 <= sentence_drop < 1.0:
            raise ValueError(f"sentence_drop must be in [0, 1), got {sentence_drop}")
        if mask_images:  # fail now, not in a worker: checks strategy, ratio and divisibility
            image_mask(image_size, image_size, strategy=mask_strategy, ratio=mask_ratio, unit=mask_unit,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
        self.catalogue, self.tokenizer, self.label_maps = catalogue, tokenizer, label_maps
        self.image_size, self.resize = int(image_size), resize
        self.image_cache = _checked_cache(image_cache, catalogue, self.image_size, resize)
        self.mask_images, self.mask_strategy = mask_images, mask_strategy
        self.mask_ratio, self.mask_unit = float(mask_ratio), int(mask_unit)
        self.mlm, self.mlm_prob = mlm, float(mlm_prob)
        self.itm, self.itm_negative_prob, self.itm_negatives = itm, float(itm_negative_prob), itm_negatives
        self.seed = int(seed)
        self._epoch = torch.zeros(1, dtype=torch.long).share_memory_()
        self.set_epoch(epoch)
        self.category_labels, self.subcategory_labels = encode_labels(catalogue, label_maps)
        self.tag_labels = tag_labels
        self.sentence_drop = float(sentence_drop)
        first: dict[str, int] = {}
        self._text_keys = [first.setdefault(t, i) for i, t in enumerate(catalogue.texts)]
        self._special_ids = tuple(tokenizer.special_ids)
        if itm and len(catalogue) and (len(set(catalogue.product_ids)) < 2 or len(set(catalogue.texts)) < 2):
            raise ValueError(f"{catalogue.source}: ITM needs at least two products with different texts")
        self._pools: dict[str, np.ndarray] = {}
        if itm_negatives == "hard":
            groups: dict[str, list[int]] = {}
            for i, sub in enumerate(catalogue.subcategories):
                groups.setdefault(sub, []).append(i)
            self._pools = {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}

    # ----------------------------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's draws (shared with running DataLoader workers)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def __len__(self) -> int:
        return len(self.catalogue)

    @property
    def collate(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        return functools.partial(collate_pretrain, pad_id=self.tokenizer.pad_id)

    # ----------------------------------------------------------------------------------- negatives
    def _valid_negative(self, i: int, j: int) -> bool:
        cat = self.catalogue
        return cat.product_ids[j] != cat.product_ids[i] and cat.texts[j] != cat.texts[i]

    def _draw_from(self, i: int, pool: np.ndarray | None, g: torch.Generator) -> int | None:
        """A valid negative for ``i`` from ``pool`` (None: all items): rejection sampling, then a scan."""
        size = len(self.catalogue) if pool is None else len(pool)
        for _ in range(_REJECTION_TRIES):
            k = int(torch.randint(size, (1,), generator=g))
            j = k if pool is None else int(pool[k])
            if self._valid_negative(i, j):
                return j
        candidates = [
            j for j in (range(size) if pool is None else pool.tolist()) if self._valid_negative(i, j)
        ]
        if not candidates:
            return None
        return candidates[int(torch.randint(len(candidates), (1,), generator=g))]

    def negative_index(self, index: int, g: torch.Generator) -> int:
        """The catalogue index whose text serves as ``index``'s ITM negative."""
        j = None
        if self.itm_negatives == "hard":
            j = self._draw_from(index, self._pools[self.catalogue.subcategories[index]], g)
        if j is None:
            j = self._draw_from(index, None, g)
        if j is None:
            raise ValueError(
                f"{self.catalogue.source}: no other product with a different text for item {index}"
            )
        return j

    # ------------------------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> dict[str, Any]:
        i, epoch, cat = int(index), self.epoch, self.catalogue
        image = item_image(cat, i, self.image_size, self.resize, self.image_cache)

        text_index, itm_label = i, 1
        if self.itm:
            g = sample_generator(self.seed, epoch, i, _STREAM_ITM)
            if float(torch.rand((), generator=g)) < self.itm_negative_prob:
                text_index, itm_label = self.negative_index(i, g), 0

        if self.mask_images:
            g = sample_generator(self.seed, epoch, i, _STREAM_MASK)
            size, strategy = self.image_size, self.mask_strategy
            mask = image_mask(
                size, size, strategy=strategy, ratio=self.mask_ratio, unit=self.mask_unit, generator=g
            )
            mask = mask.unsqueeze(0)
            masked = apply_image_mask(image, mask)
        else:
            mask = torch.zeros(1, self.image_size, self.image_size, dtype=torch.bool)
            masked = image

        text = cat.texts[text_index]
        if self.sentence_drop:
            g = sample_generator(self.seed, epoch, self._text_keys[text_index], _STREAM_TEXT)
            text = drop_sentences(text, self.sentence_drop, g)
        ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        if self.mlm:
            g = sample_generator(self.seed, epoch, i, _STREAM_MLM)
            tok = self.tokenizer
            ids, mlm_labels = mlm_mask(
                ids,
                mask_token_id=tok.mask_id,
                special_ids=self._special_ids,
                vocab_size=tok.vocab_size,
                prob=self.mlm_prob,
                generator=g,
            )
        else:
            mlm_labels = torch.full_like(ids, IGNORE_INDEX)
        return _with_tags({
            "image": image,
            "masked_image": masked,
            "image_mask": mask,
            "input_ids": ids,
            "mlm_labels": mlm_labels,
            "itm_label": itm_label,
            "category_label": int(self.category_labels[i]),
            "subcategory_label": int(self.subcategory_labels[i]),
            "index": i,
            "product_id": cat.product_ids[i],
            "text_index": text_index,
        }, self.tag_labels, i)  # fmt: skip


def collate_pretrain(samples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, Any]:
    """Stack :class:`PretrainDataset` samples into the batch ``MVLT.forward_loss`` consumes.

    Keys (exactly :data:`PRETRAIN_KEYS`): ``images``, ``masked_images`` (float ``B x 3 x H x W``),
    ``image_mask`` (bool ``B x 1 x H x W``), ``input_ids``, ``attention_mask``, ``mlm_labels``
    (long ``B x L``, L = the longest text in the batch), ``itm_labels``, ``category_labels``,
    ``subcategory_labels``, ``index`` (long ``B``) and ``product_ids`` (list of str); and
    ``tag_labels`` when the dataset has them.
    """
    ids = [s["input_ids"] for s in samples]
    input_ids = pad_sequences(ids, pad_id)
    length = input_ids.shape[1]
    return _stack_tags({
        "images": torch.stack([s["image"] for s in samples]),
        "masked_images": torch.stack([s["masked_image"] for s in samples]),
        "image_mask": torch.stack([s["image_mask"] for s in samples]),
        "input_ids": input_ids,
        "attention_mask": pad_sequences([torch.ones(len(x), dtype=torch.long) for x in ids], 0, length),
        "mlm_labels": pad_sequences([s["mlm_labels"] for s in samples], IGNORE_INDEX, length),
        "itm_labels": torch.tensor([s["itm_label"] for s in samples], dtype=torch.long),
        "category_labels": torch.tensor([s["category_label"] for s in samples], dtype=torch.long),
        "subcategory_labels": torch.tensor([s["subcategory_label"] for s in samples], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "product_ids": [s["product_id"] for s in samples],
    }, samples)  # fmt: skip
