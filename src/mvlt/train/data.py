"""The training side of the data layer: tokenizer and label maps of a run, its dataset, and a
sampler whose order is a pure function of ``(seed, epoch)`` so a resumed run can skip exactly
the batches it already trained on (at the index level: skipped items are never loaded)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data.batches import PairDataset, PretrainDataset, encode_tags
from ..data.catalogue import Catalogue
from ..data.columns import catalogue_columns
from ..data.image_cache import open_image_cache
from ..data.labels import LabelMaps
from ..data.sources import open_catalogue
from ..data.tokenizer import CONFIG_NAME as TOKENIZER_CONFIG
from ..data.tokenizer import VOCAB_NAME, Tokenizer, bert_tokenizer
from .config import TrainConfig


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by ``seed + epoch``, the tail that does not fill every rank
    dropped) that yields only positions ``[start, stop)`` of this rank's share of the epoch.

    Rank ``r`` gets positions ``r, r + W, r + 2W, ...`` of one permutation, so the ``W`` micro-
    batches of a step together hold the same items whatever the world size: a global batch is a
    contiguous slice of the epoch's permutation. With ``groups`` (one label per item) and
    ``block``, the permutation is :func:`grouped_order`'s: blocks of items that share a label.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int,
        rank: int,
        seed: int,
        shuffle: bool = True,
        groups: Sequence[str] | None = None,
        block: int = 0,
    ):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        if block and (groups is None or len(groups) != len(dataset)):  # type: ignore[arg-type]
            raise ValueError("a grouped sampler needs one group label per item")
        self.groups, self.block = (list(groups) if block and groups is not None else None), block
        self.start, self.stop = 0, self.num_samples

    def window(self, start: int, stop: int) -> None:
        """Yield only this rank's positions ``start .. stop - 1`` of the current epoch."""
        if not 0 <= start <= stop <= self.num_samples:
            raise ValueError(f"sampler window [{start}, {stop}) outside [0, {self.num_samples}]")
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[int]:
        if self.groups is None:
            indices = list(super().__iter__())
        else:
            order = grouped_order(self.groups, self.block, self.seed + self.epoch)
            indices = order[: self.total_size][self.rank : self.total_size : self.num_replicas]
        return iter(indices[self.start : self.stop])

    def __len__(self) -> int:
        return self.stop - self.start


def grouped_order(groups: Sequence[str], block: int, seed: int) -> list[int]:
    """A permutation of ``range(len(groups))`` made of ``block``-item blocks in a shuffled order:
    each group's items shuffled and cut into full blocks, then every group's remainder shuffled
    together and cut into mixed blocks (the last may be short). Consecutive blocks tile a batch
    whose size ``block`` divides, so every batch is a few groups' worth of look-alikes."""
    g = torch.Generator().manual_seed(seed)
    members: dict[str, list[int]] = {}
    for i, label in enumerate(groups):
        members.setdefault(label, []).append(i)
    blocks, rest = [], []
    for label in sorted(members):
        items = members[label]
        shuffled = [items[j] for j in torch.randperm(len(items), generator=g).tolist()]
        full = len(shuffled) - len(shuffled) % block
        blocks += [shuffled[k : k + block] for k in range(0, full, block)]
        rest += shuffled[full:]
    rest = [rest[j] for j in torch.randperm(len(rest), generator=g).tolist()]
    mixed = [rest[k : k + block] for k in range(0, len(rest), block)]
    tail = mixed.pop() if mixed and len(mixed[-1]) < block else []  # a short block only at the end
    blocks += mixed
    return [i for j in torch.randperm(len(blocks), generator=g).tolist() for i in blocks[j]] + tail


def open_training_catalogue(
    config: TrainConfig, image_size: int, label_maps: LabelMaps | None = None
) -> Catalogue:
    """The run's training split. The synthetic catalogue is drawn at the training size unless
    ``data_options`` says otherwise (drawing 256 px to shrink it to 64 px would be wasted work)."""
    options = dict(config.data_options)
    if str(config.data).strip().lower() == "synthetic":
        options.setdefault("image_size", image_size)
        options.setdefault("seed", config.seed)
    if label_maps is not None:
        options.setdefault("label_maps", label_maps)
    if config.skip_bad_rows:
        options.setdefault("skip_bad_rows", True)
    try:
        return open_catalogue(config.data, split=config.split, **options)
    except TypeError as err:  # an option the catalogue class does not take
        raise ValueError(f"--data {config.data}: bad data_options {sorted(options)}: {err}") from err


def load_tokenizer(spec: str, max_length: int) -> Tokenizer:
    """A tokenizer from a ``vocab.txt`` file or a folder (saved tokenizer, or one with a vocab.txt)."""
    path = Path(spec)
    if path.is_dir():
        if (path / TOKENIZER_CONFIG).is_file():
            return Tokenizer.load(path)
        if (path / VOCAB_NAME).is_file():
            return Tokenizer.from_vocab(path / VOCAB_NAME, max_length=max_length)
        raise FileNotFoundError(
            f"--tokenizer {spec}: the folder holds neither {TOKENIZER_CONFIG} nor {VOCAB_NAME}"
        )
    if path.is_file():
        return Tokenizer.from_vocab(path, max_length=max_length)
    raise FileNotFoundError(f"--tokenizer {spec}: no such file or folder (or pass 'train')")


def resolve_tokenizer(
    config: TrainConfig, catalogue: Catalogue, fallback: Tokenizer | None = None
) -> Tokenizer:
    """``--tokenizer``: ``train`` (learn a vocabulary on the training texts), a path, or none
    (``fallback``, i.e. the ``--init`` checkpoint's, else the bundled BERT-base-uncased vocabulary,
    the released code's)."""
    spec = config.tokenizer
    if spec is not None and spec.strip().lower() == "train":
        return Tokenizer.train(catalogue.texts, config.vocab_size, max_length=config.max_text_len)
    if spec is not None:
        return load_tokenizer(spec, config.max_text_len)
    if fallback is not None:
        return fallback
    return bert_tokenizer(max_length=config.max_text_len)


def build_dataset(
    config: TrainConfig,
    catalogue: Catalogue,
    tokenizer: Tokenizer,
    label_maps: LabelMaps | None,
    image_size: int,
    weights: dict[str, float],
    schedule: str,
    progress: bool = True,
) -> PretrainDataset | PairDataset:
    """Pre-training samples when any of ITC/MIR/ITM/MLM is on or masked inputs are asked for;
    otherwise plain clean pairs (fine-tuning). Objectives that are off get clean data. ITM
    negatives mined from ITC come from the batch, so the dataset then keeps every text. Images
    come from the decoded-image cache (``config.image_cache``), built here if needed, so a bad
    image stops the run before its first step, naming the row."""
    negatives = config.resolved_itm_negatives()
    cache = open_image_cache(catalogue, image_size, config.resize, config.image_cache, progress=progress)
    tags = None
    if weights.get("tags") and label_maps is not None and label_maps.tag_columns:
        values = catalogue_columns(catalogue, label_maps.tag_columns, "--labels").values
        tags = encode_tags(values, label_maps)
    if not any(weights[k] for k in ("itc", "mir", "itm", "mlm")) and schedule == "clean":
        return PairDataset(
            catalogue, tokenizer, label_maps=label_maps, image_size=image_size, resize=config.resize,
            image_cache=cache, tag_labels=tags,
        )  # fmt: skip
    return PretrainDataset(
        catalogue,
        tokenizer,
        label_maps=label_maps,
        image_size=image_size,
        resize=config.resize,
        mask_images=schedule != "clean",
        mask_strategy=config.mask_strategy,
        mask_ratio=config.mask_ratio,
        mask_unit=config.mask_unit,
        mlm=bool(weights["mlm"]),
        mlm_prob=config.mlm_prob,
        itm=bool(weights["itm"]) and negatives != "itc",
        itm_negative_prob=config.itm_negative_prob,
        itm_negatives=negatives if negatives != "itc" else "random",
        seed=config.seed,
        image_cache=cache,
        tag_labels=tags,
        sentence_drop=config.sentence_drop,
    )


def tag_lines(label_maps: LabelMaps | None) -> list[str]:
    """One banner line per tag head: its labels and the rows left out of its loss (no value)."""
    if label_maps is None:
        return []
    return [
        f"  tag head {c}: {len(label_maps.tag_names(c))} labels; {label_maps.tag_unlabelled[c]} training "
        "rows without a value, left out of its loss"
        for c in label_maps.tag_columns
    ]


def epoch_loader(
    dataset: Any,
    sampler: ResumableSampler,
    micro_batch: int,
    epoch: int,
    seed: int,
    workers: int,
    pin_memory: bool,
) -> DataLoader:
    """A loader for one epoch. Its own generator (seeded by ``seed, epoch``) keeps the loader from
    drawing from the global torch RNG, which dropout uses and a resumed run restores."""
    sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=micro_batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=dataset.collate,
        drop_last=True,
        pin_memory=pin_memory,
        generator=generator,
    )
