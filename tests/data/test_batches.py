from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mvlt.data import (
    PAIR_KEYS,
    PRETRAIN_KEYS,
    LabelMaps,
    PairDataset,
    PretrainDataset,
    SyntheticCatalogue,
    Tokenizer,
    collate_pairs,
    collate_pretrain,
    encode_texts,
    open_catalogue,
)
from mvlt.masking import IGNORE_INDEX, MASK_FILL

SIZE = 32


@pytest.fixture(scope="module")
def tokenizer(bert_vocab: Path) -> Tokenizer:
    return Tokenizer.from_vocab(bert_vocab)


@pytest.fixture(scope="module")
def catalogue() -> SyntheticCatalogue:
    return SyntheticCatalogue(num_products=120, seed=5, image_size=SIZE)


def _dataset(catalogue: SyntheticCatalogue, tokenizer: Tokenizer, **options: object) -> PretrainDataset:
    defaults: dict[str, object] = {"image_size": SIZE, "mask_unit": 8}
    return PretrainDataset(catalogue, tokenizer, **{**defaults, **options})  # type: ignore[arg-type]


def test_batch_keys_shapes_dtypes(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    maps = LabelMaps.from_catalogue(catalogue)
    ds = _dataset(catalogue, tokenizer, label_maps=maps)
    batch = collate_pretrain([ds[i] for i in range(6)], pad_id=tokenizer.pad_id)
    assert tuple(batch) == PRETRAIN_KEYS
    b, length = 6, batch["input_ids"].shape[1]
    for key in ("images", "masked_images"):
        assert batch[key].shape == (b, 3, SIZE, SIZE) and batch[key].dtype == torch.float32
    assert batch["image_mask"].shape == (b, 1, SIZE, SIZE) and batch["image_mask"].dtype == torch.bool
    for key in ("input_ids", "attention_mask", "mlm_labels"):
        assert batch[key].shape == (b, length) and batch[key].dtype == torch.long
    for key in ("itm_labels", "category_labels", "subcategory_labels", "index"):
        assert batch[key].shape == (b,) and batch[key].dtype == torch.long
    assert batch["product_ids"] == catalogue.product_ids[:6]
    assert batch["index"].tolist() == list(range(6))
    assert batch["category_labels"].tolist() == [maps.category_id(c) for c in catalogue.categories[:6]]
    assert batch["subcategory_labels"].tolist() == [
        maps.subcategory_id(s) for s in catalogue.subcategories[:6]
    ]
    assert float(batch["images"].min()) >= 0 and float(batch["images"].max()) <= 1
    assert ds.collate([ds[0]])["input_ids"].shape[0] == 1


def test_dynamic_padding_and_mlm(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    ds = _dataset(catalogue, tokenizer, itm=False)
    samples = [ds[i] for i in range(8)]
    batch = collate_pretrain(samples)
    lengths = [len(tokenizer.encode(t)) for t in catalogue.texts[:8]]
    assert batch["input_ids"].shape[1] == max(lengths) < 128  # longest in the batch, not 128
    assert batch["attention_mask"].sum(1).tolist() == lengths
    pad = batch["attention_mask"] == 0
    assert (batch["input_ids"][pad] == tokenizer.pad_id).all() and (
        batch["mlm_labels"][pad] == IGNORE_INDEX
    ).all()
    for row, n in enumerate(lengths):
        clean = torch.tensor(tokenizer.encode(catalogue.texts[row]))
        labels = batch["mlm_labels"][row, :n]
        chosen = labels != IGNORE_INDEX
        assert int(chosen.sum()) == max(1, round(0.15 * (n - 2)))  # [CLS]/[SEP] never selected
        assert not chosen[0] and not chosen[n - 1] and (labels[chosen] == clean[chosen]).all()
        assert (batch["input_ids"][row, :n][~chosen] == clean[~chosen]).all()


def test_image_mask_ratio_exact(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    for ratio in (0.5, 0.25):
        ds = _dataset(catalogue, tokenizer, mask_ratio=ratio)
        batch = collate_pretrain([ds[i] for i in range(4)])
        mask = batch["image_mask"]
        assert mask.float().mean(dim=(1, 2, 3)).tolist() == [ratio] * 4
        expanded = mask.expand_as(batch["images"])
        assert (batch["masked_images"][expanded] == MASK_FILL).all()
        assert torch.equal(batch["masked_images"][~expanded], batch["images"][~expanded])
    grid = _dataset(catalogue, tokenizer, mask_strategy="grid", mask_ratio=0.5)
    assert grid[0]["image_mask"].float().mean() == 0.5
    off = _dataset(catalogue, tokenizer, mask_images=False)[0]
    assert not off["image_mask"].any() and torch.equal(off["masked_image"], off["image"])
    with pytest.raises(ValueError, match="divisible"):
        _dataset(catalogue, tokenizer, mask_unit=12)


@pytest.mark.parametrize("negatives", ["random", "hard"])
def test_itm_negatives_are_other_products(
    catalogue: SyntheticCatalogue, tokenizer: Tokenizer, negatives: str
) -> None:
    ds = _dataset(catalogue, tokenizer, itm_negatives=negatives, mlm=False, mask_images=False)
    labels, fallbacks = [], 0
    for i in range(len(catalogue)):
        j = ds.negative_index(i, torch.Generator().manual_seed(i))
        assert (
            catalogue.product_ids[j] != catalogue.product_ids[i] and catalogue.texts[j] != catalogue.texts[i]
        )
        if negatives == "hard":  # same sub-category unless it has no other product (then: random)
            same = [k for k, sub in enumerate(catalogue.subcategories) if sub == catalogue.subcategories[i]]
            possible = any(catalogue.product_ids[k] != catalogue.product_ids[i] for k in same)
            assert (catalogue.subcategories[j] == catalogue.subcategories[i]) == possible
            fallbacks += not possible
    assert fallbacks < len(catalogue) // 10
    for i in range(60):
        sample = ds[i]
        labels.append(sample["itm_label"])
        source = sample["text_index"]
        own = tokenizer.encode(catalogue.texts[i])
        if sample["itm_label"] == 1:
            assert source == i and sample["input_ids"].tolist() == own
        else:
            assert catalogue.product_ids[source] != catalogue.product_ids[i]
            assert sample["input_ids"].tolist() == tokenizer.encode(catalogue.texts[source])
    assert 15 < sum(labels) < 45  # about half positives


def test_switches_for_finetuning(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    ds = _dataset(catalogue, tokenizer, itm=False, mlm=False)
    batch = collate_pretrain([ds[i] for i in range(5)])
    assert (batch["itm_labels"] == 1).all() and (batch["mlm_labels"] == IGNORE_INDEX).all()
    assert batch["input_ids"][0, : batch["attention_mask"][0].sum()].tolist() == tokenizer.encode(
        catalogue.texts[0]
    )
    assert (batch["category_labels"] == IGNORE_INDEX).all()  # no label maps given
    with pytest.raises(ValueError, match="itm_negatives"):
        _dataset(catalogue, tokenizer, itm_negatives="easy")


def test_unknown_labels_are_recorded(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    maps = LabelMaps(["dress"], ["mini dress"])
    ds = _dataset(catalogue, tokenizer, label_maps=maps)
    known = next(i for i, c in enumerate(catalogue.categories) if c == "dress")
    other = next(i for i, c in enumerate(catalogue.categories) if c != "dress")
    assert ds[known]["category_label"] == 0 and ds[other]["category_label"] == IGNORE_INDEX
    assert sum(maps.unknown["category"].values()) == sum(c != "dress" for c in catalogue.categories)
    assert "unknown labels" in (maps.unknown_report() or "")


def _equal(a: dict[str, object], b: dict[str, object]) -> bool:
    return all(torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k] for k, v in a.items())


def test_deterministic_by_seed_epoch_index(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    ds = _dataset(catalogue, tokenizer, seed=1)
    first = ds[3]
    assert _equal(first, ds[3]) and _equal(first, _dataset(catalogue, tokenizer, seed=1)[3])
    ds.set_epoch(1)
    assert ds.epoch == 1 and not torch.equal(ds[3]["image_mask"], first["image_mask"])
    ds.set_epoch(0)
    assert _equal(ds[3], first)
    assert not torch.equal(_dataset(catalogue, tokenizer, seed=2)[3]["image_mask"], first["image_mask"])
    # switching MLM off does not change the image mask or the ITM draw
    no_mlm = _dataset(catalogue, tokenizer, seed=1, mlm=False)[3]
    assert (
        torch.equal(no_mlm["image_mask"], first["image_mask"]) and no_mlm["text_index"] == first["text_index"]
    )


@pytest.mark.slow
def test_independent_of_worker_count(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    ds = _dataset(catalogue, tokenizer, seed=4)
    subset = torch.utils.data.Subset(ds, range(24))

    def run(workers: int, epochs: int = 2) -> list[dict[str, object]]:
        loader = DataLoader(subset, batch_size=5, num_workers=workers, collate_fn=ds.collate,
                            persistent_workers=workers > 0)  # fmt: skip
        out = []
        for epoch in range(epochs):
            ds.set_epoch(epoch)  # must reach the persistent workers too
            out.extend(loader)
        return out

    serial, parallel = run(0), run(2)
    assert len(serial) == len(parallel) == 10
    assert all(_equal(a, b) for a, b in zip(serial, parallel))
    assert not torch.equal(serial[0]["image_mask"], serial[5]["image_mask"])  # epochs differ


def test_pairs_and_encode_texts(catalogue: SyntheticCatalogue, tokenizer: Tokenizer) -> None:
    maps = LabelMaps.from_catalogue(catalogue)
    pairs = PairDataset(catalogue, tokenizer, label_maps=maps, image_size=SIZE)
    batch = collate_pairs([pairs[i] for i in range(3)], pad_id=tokenizer.pad_id)
    assert tuple(batch) == PAIR_KEYS
    assert batch["images"].shape == (3, 3, SIZE, SIZE)
    encoded = encode_texts(tokenizer, catalogue.texts[:3])
    assert torch.equal(encoded["input_ids"], batch["input_ids"])
    assert torch.equal(encoded["attention_mask"], batch["attention_mask"])
    assert batch["subcategory_labels"].tolist() == [
        maps.subcategory_id(s) for s in catalogue.subcategories[:3]
    ]
    assert encode_texts(tokenizer, ["a", "a red dress"])["attention_mask"].tolist() == [
        [1, 1, 1, 0, 0],
        [1] * 5,
    ]


def test_sentence_drop_shortens_texts_per_epoch_and_rows_sharing_a_text_alike(
    tmp_path: Path, tokenizer: Tokenizer, files: type
) -> None:
    rows = files.default_rows(6)
    for i, row in enumerate(rows):
        row["text"] = f"Product {i}. Soft cotton jersey. A round neck. Short sleeves. Colour: Red."
        row["split"] = "train"
    rows[1]["text"] = rows[0]["text"]  # a colour variant sharing its description
    cat = open_catalogue(files.write_csv(tmp_path / "metadata.csv", rows), split="train")
    options = {"image_size": SIZE, "mask_unit": 8, "mlm": False, "seed": 3}
    plain = PretrainDataset(cat, tokenizer, **options)  # type: ignore[arg-type]
    dropping = PretrainDataset(cat, tokenizer, sentence_drop=0.5, **options)  # type: ignore[arg-type]
    shorter = 0
    for epoch in range(6):
        plain.set_epoch(epoch)
        dropping.set_epoch(epoch)
        for i in range(len(cat)):
            full, cut = plain[i], dropping[i]
            assert full["text_index"] == cut["text_index"]  # the ITM draw is its own stream
            assert torch.equal(full["image_mask"], cut["image_mask"])
            ids, full_ids = cut["input_ids"].tolist(), full["input_ids"].tolist()
            first = tokenizer.encode(cat.texts[full["text_index"]].split(". ")[0] + ".")
            assert ids[: len(first) - 1] == first[:-1] and len(ids) <= len(full_ids)  # first sentence kept
            shorter += len(ids) < len(full_ids)
    assert shorter > 10
    own = PretrainDataset(cat, tokenizer, sentence_drop=0.5, **{**options, "itm": False})  # type: ignore[arg-type]
    again = PretrainDataset(cat, tokenizer, sentence_drop=0.5, **{**options, "itm": False})  # type: ignore[arg-type]
    for epoch in range(6):
        own.set_epoch(epoch)
        again.set_epoch(epoch)
        assert torch.equal(own[0]["input_ids"], own[1]["input_ids"])  # keyed by the text, not the row
        assert torch.equal(own[2]["input_ids"], again[2]["input_ids"])  # a pure function of seed and epoch
    with pytest.raises(ValueError, match="sentence_drop"):
        PretrainDataset(cat, tokenizer, sentence_drop=1.0, **options)  # type: ignore[arg-type]
