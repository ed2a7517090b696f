from __future__ import annotations

import logging
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from mvlt.data import DataError, LabelMaps, ManifestCatalogue, PairDataset, Tokenizer, open_catalogue


def test_csv_manifest(manifest: Path) -> None:
    cat = open_catalogue(manifest)
    assert isinstance(cat, ManifestCatalogue) and len(cat) == 6 and cat.source == str(manifest)
    item = cat[1]
    assert item.product_id == "0000000001" and item.text == "A red product number 1."
    assert (item.category, item.subcategory, item.index) == ("Tops", "Shirt", 1)
    assert item._image is None  # lazy
    assert item.image.mode == "RGB" and item.image.size == (24, 32)
    assert cat.product_ids == [f"{i:010d}" for i in range(6)] and cat.groups == cat.product_ids
    assert len(open_catalogue(manifest, split="train")) == 4
    assert open_catalogue(manifest, split="test").texts == [
        "A blue product number 4.",
        "A red product number 5.",
    ]
    assert len(open_catalogue(manifest.parent)) == 6  # a folder holding metadata.csv
    with pytest.raises(IndexError):
        cat[6]


def test_jsonl_manifest(files: Any, tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [dict(r) for r in files.default_rows(4)]
    rows[0]["product_id"] = 123  # numbers are read as text
    rows[1]["product_code"] = "g1"
    path = files.write_jsonl(tmp_path / "data" / "manifest.jsonl", rows)
    cat = open_catalogue(path, split="train")
    assert len(cat) == 2 and cat.product_ids == ["123", "0000000001"] and cat.groups[1] == "g1"
    assert cat[0].image.size == (24, 32)


def test_split_errors(files: Any, manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no rows in split 'val' \(splits: test, train\)"):
        open_catalogue(manifest, split="val")
    no_split = files.write_csv(
        tmp_path / "nosplit" / "m.csv",
        files.default_rows(2),
        columns=files.default_rows(1)[0].keys() - {"split"},
    )
    with pytest.raises(DataError, match="no 'split' column"):
        open_catalogue(no_split, split="train")


def test_open_catalogue_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.csv"):
        open_catalogue(tmp_path / "nothing.csv")
    with pytest.raises(FileNotFoundError, match="no manifest"):
        open_catalogue(tmp_path)
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(ValueError, match="unknown catalogue format"):
        open_catalogue(tmp_path / "x.parquet")


def test_hm_catalogue(hm_dir: Path) -> None:
    everything = open_catalogue(hm_dir / "metadata.csv")
    assert len(everything) == 11715
    assert len(set(everything.categories)) == 11 and len(set(everything.subcategories)) == 103
    assert all(isinstance(p, str) and len(p) == 10 for p in everything.product_ids)
    assert everything.product_ids[0] == "0111565001"
    # groups = H&M product_code (colour variants of one product): the 7-digit id prefix
    assert all(pid[:7] == group.zfill(7) for pid, group in zip(everything.product_ids, everything.groups))
    train, test = open_catalogue(hm_dir, split="train"), open_catalogue(hm_dir / "metadata.csv", split="test")
    assert (len(train), len(test)) == (9307, 2408)
    assert not set(train.groups) & set(test.groups)  # variants stay together
    item = test[0]
    assert item.image.size == (256, 256) and item.image.mode == "RGB"


# ------------------------------------------------------------------------------------ bad input
def _bad_manifest(files: Any, tmp_path: Path) -> Path:
    """Rows 1-2 good; row 3 missing image; 4 empty text; 5 not an image; 6 truncated; 7 bad encoding."""
    rows = files.default_rows(7)
    for row in rows:
        row["split"] = "train"
    rows[3]["text"] = "   "
    path = files.write_csv(tmp_path / "bad.csv", rows)
    (tmp_path / rows[2]["image"]).unlink()
    (tmp_path / rows[4]["image"]).write_text("not an image at all")
    noise = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    rows[5]["image"] = "images/truncated.jpg"
    (tmp_path / "images" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    path = files.write_csv(tmp_path / "bad.csv", rows, images=False)
    raw = path.read_bytes().replace(b"product number 6", b"caf\xe9 number 6")  # latin-1 byte in UTF-8
    path.write_bytes(raw)
    return path


def test_first_bad_row_is_named(files: Any, tmp_path: Path) -> None:
    path = _bad_manifest(files, tmp_path)
    with pytest.raises(DataError) as err:
        open_catalogue(path)
    # Metadata is checked row by row first (empty text, row 4), then file existence.
    assert (
        err.value.reason == "empty_text"
        and "row 4 (line 5)" in str(err.value)
        and str(path) in str(err.value)
    )


@pytest.mark.parametrize(
    ("row", "reason", "expect"),
    [
        (2, "missing_file", "image file not found"),
        (3, "empty_text", "empty text"),
        (6, "encoding", "not valid utf-8"),
    ],
)
def test_open_time_errors(files: Any, tmp_path: Path, row: int, reason: str, expect: str) -> None:
    rows = files.default_rows(8)
    path = files.write_csv(tmp_path / "m.csv", rows)
    if reason == "missing_file":
        (tmp_path / rows[row]["image"]).unlink()
    elif reason == "empty_text":
        rows[row]["text"] = ""
        files.write_csv(path, rows)
    else:
        path.write_bytes(path.read_bytes().replace(b"number 6", b"\xff\xfe 6"))
    with pytest.raises(DataError, match=expect) as err:
        ManifestCatalogue(path)
    message = str(err.value)
    assert err.value.reason == reason
    assert str(path) in message and f"row {row + 1} (line {row + 2})" in message


def test_encoding_option(files: Any, tmp_path: Path) -> None:
    rows = files.default_rows(3)
    rows[1]["text"] = "Robe été"
    path = files.write_csv(tmp_path / "m.csv", rows)
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))
    with pytest.raises(DataError, match="row 2"):
        open_catalogue(path)
    assert open_catalogue(path, encoding="latin-1").texts[1] == "Robe été"


def test_missing_column(files: Any, tmp_path: Path) -> None:
    path = files.write_csv(
        tmp_path / "m.csv", files.default_rows(2), columns=("image", "text", "category", "product_id")
    )
    for skip in (False, True):  # every row lacks it: fatal even with skip_bad_rows
        with pytest.raises(DataError, match=r"missing required column.*subcategory") as err:
            open_catalogue(path, skip_bad_rows=skip)
        assert "line 1 (header)" in str(err.value) and err.value.reason == "missing_column"
    rows: list[dict[str, object]] = [dict(r) for r in files.default_rows(3)]
    del rows[1]["category"]
    jsonl = files.write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError, match=r"line 2: missing required column\(s\) category"):
        open_catalogue(jsonl)
    assert open_catalogue(jsonl, skip_bad_rows=True).skipped == Counter(missing_column=1)


def test_malformed_rows(files: Any, tmp_path: Path) -> None:
    path = files.write_csv(tmp_path / "m.csv", files.default_rows(3))
    path.write_text(path.read_text() + "images/000.png,only two fields\n")
    with pytest.raises(DataError, match=r"row 4 \(line 5\): has 2 fields, the header has 6"):
        open_catalogue(path)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"image": "a.png"\n[1, 2]\n')
    with pytest.raises(DataError, match="line 1: bad JSON"):
        open_catalogue(jsonl)


def test_load_time_image_errors_name_file_and_row(files: Any, tmp_path: Path) -> None:
    path = _bad_manifest(files, tmp_path)
    # Keep the header and rows 1, 2 (good), 5 (not an image) and 6 (truncated).
    lines = path.read_bytes().split(b"\r\n")
    path.write_bytes(b"\r\n".join([lines[0], lines[1], lines[2], lines[5], lines[6]]) + b"\r\n")
    cat = open_catalogue(path)  # existence is checked at open time, decoding at load time
    assert len(cat) == 4
    with pytest.raises(DataError, match="not an image") as err:
        _ = cat[2].image
    assert str(path) in str(err.value) and "row 3 (line 4)" in str(err.value) and "004.png" in str(err.value)
    with pytest.raises(DataError, match="truncated") as err:
        cat.load_image(3)
    assert "row 4 (line 5)" in str(err.value) and "truncated.jpg" in str(err.value)


def test_unknown_labels(manifest: Path) -> None:
    maps = LabelMaps(["Tops"], ["Shirt"])  # "Bottoms"/"Skirt" are unknown to this model
    with pytest.raises(DataError, match=r"row 1 \(line 2\): unknown label\(s\) category 'Bottoms'") as err:
        open_catalogue(manifest, label_maps=maps)
    assert err.value.reason == "unknown_label"
    cat = open_catalogue(manifest, label_maps=maps, skip_bad_rows=True)
    assert len(cat) == 3 and cat.skipped == Counter(unknown_label=3)


def test_skip_bad_rows_counts_each_reason(
    files: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _bad_manifest(files, tmp_path)
    with caplog.at_level(logging.WARNING, logger="mvlt.data"):
        cat = open_catalogue(path, skip_bad_rows=True)
    assert cat.product_ids == ["0000000000", "0000000001"]
    assert cat.skipped == Counter(missing_file=1, empty_text=1, bad_image=2, encoding=1)
    report = cat.skip_report()
    assert report is not None and report.startswith(f"skipped 5 bad rows of {path}")
    assert "2 bad_image" in report and report in caplog.text
    assert any("row 3 (line 4)" in e for e in cat.skips.examples)
    assert "skipped=5" in repr(cat)


def test_all_rows_bad(files: Any, tmp_path: Path) -> None:
    rows = files.default_rows(2)
    for row in rows:
        row["text"] = ""
    path = files.write_csv(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match=r"no usable rows.*skipped 2 bad rows"):
        open_catalogue(path, skip_bad_rows=True)


def test_absolute_image_paths(files: Any, tmp_path: Path) -> None:
    rows = files.default_rows(2)
    rows[0]["image"] = str(files.write_image(tmp_path / "elsewhere" / "a.png"))
    path = files.write_csv(tmp_path / "sub" / "m.csv", rows)
    assert open_catalogue(path)[0].image.size == (24, 32)


def test_errors_survive_pickling_and_workers(files: Any, tmp_path: Path, bert_vocab: Path) -> None:
    err = DataError("m.csv", "row 2 (line 3)", "empty_text", "empty text")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.reason == "empty_text" and again.where == "row 2 (line 3)"
    rows = files.default_rows(4)
    path = files.write_csv(tmp_path / "m.csv", rows)
    (tmp_path / rows[3]["image"]).write_bytes(b"garbage")
    pairs = PairDataset(open_catalogue(path), Tokenizer.from_vocab(bert_vocab), image_size=16)
    loader = DataLoader(pairs, batch_size=4, num_workers=1, collate_fn=pairs.collate)
    with pytest.raises(DataError, match=r"row 4 \(line 5\).*003\.png: not an image"):
        next(iter(loader))
