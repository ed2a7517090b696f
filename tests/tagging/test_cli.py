"""``mvlt tag``: a folder or a catalogue to JSONL / CSV, --evaluate, bad photos, and one-line errors
with the exit codes of :mod:`mvlt.exits` (1: what a flag points at is bad; 2: the flags are)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

import mvlt
from mvlt.cli import main
from mvlt.data import bert_tokenizer

QUIET = ["--no-progress", "--threads", "2"]


def tag(*args: str) -> int:
    return main(["tag", *args, *QUIET])


def test_a_folder_of_photos_to_jsonl(checkpoint: Path, shop: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tags.jsonl"
    spec = ["--zero-shot", "colour=black,white,red", "--zero-shot", "pattern=solid,stripes,dots,checks"]
    assert tag("--checkpoint", str(checkpoint), "--images", str(shop.parent / "images"), *spec,
               "--top-k", "2", "--out", str(out)) == 0  # fmt: skip
    assert "tagged 24 photos with colour (zero-shot), pattern (zero-shot)" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 24 and records[0]["image"].endswith(".png") and records[0]["product_id"] is None
    for record in records:
        colour = record["tags"]["colour"]
        assert len(colour) == 2 and colour[0]["probability"] >= colour[1]["probability"]
        assert {t["label"] for t in colour} <= {"black", "white", "red"}


def test_a_manifest_split_to_csv_with_its_own_columns(checkpoint: Path, shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "tags.csv"
    assert tag("--checkpoint", str(checkpoint), "--data", str(shop), "--split", "test",
               "--zero-shot", "colour,pattern", "--prompt", "a photo of a {label} garment",
               "--out", str(out)) == 0  # fmt: skip
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert list(rows[0]) == ["image", "product_id", *(f"{a}{s}" for a in ("colour", "pattern")
                                                        for s in ("", "_p", "_top", "_source"))]  # fmt: skip
    assert {r["colour_source"] for r in rows} == {"zero-shot"}
    with shop.open(newline="") as f:
        manifest = list(csv.DictReader(f))
    colours = {r["colour"] for r in manifest} - {""}
    ids = {r["product_id"] for r in manifest if r["split"] == "test"}
    assert all(r["colour"] in colours and r["product_id"] in ids for r in rows)
    assert all(len(r["colour_top"].split("|")) == 3 and 0 < float(r["colour_p"]) <= 1 for r in rows)


def test_evaluate_scores_against_the_columns(checkpoint: Path, shop: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    assert tag("--checkpoint", str(checkpoint), "--data", str(shop), "--evaluate",
               "--zero-shot", "colour,pattern", "--out", str(out)) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "colour: zero-shot accuracy" in printed and "(majority" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["split"] == "test"  # --evaluate's default, as mvlt evaluate's
    assert metrics["tag_colour_items"] == 11 and metrics["tag_colour_unlabelled_items"] == 1
    for attribute in ("colour", "pattern"):
        for stat in ("acc_zeroshot", "macro_f1_zeroshot", "acc_majority", "macro_f1_majority"):
            assert 0.0 <= metrics[f"tag_{attribute}_{stat}"] <= 1.0
    assert metrics["tag_pattern_items"] == 12
    assert metrics["protocol"]["attributes"]["colour"]["majority_label"] and "data" in metrics["protocol"]
    assert len((out / "tags.jsonl").read_text().splitlines()) == 12


def test_unreadable_photos_stop_the_run_or_are_counted(
    checkpoint: Path, shop: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(next((shop.parent / "images").iterdir()), folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not a picture")
    args = ["--checkpoint", str(checkpoint), "--images", str(folder), "--zero-shot", "colour=black,white"]
    out = tmp_path / "tags.jsonl"
    assert tag(*args, "--out", str(out)) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mvlt tag: error: ") and "broken.jpg" in err and not out.exists()
    assert tag(*args, "--out", str(out), "--skip-bad-rows") == 0
    assert "skipped 1 bad row" in capsys.readouterr().err
    assert [json.loads(line)["image"] for line in out.read_text().splitlines()] == ["good.png"]


def test_errors_name_the_flag_and_exit_1_or_2(checkpoint: Path, shop: Path, tmp_path: Path, capsys) -> None:
    no_itc = mvlt.create_model("mvlt_nano", image_size=32, contrastive_dim=0, max_text_len=48)
    no_itc.tokenizer = bert_tokenizer(max_length=48)
    no_itc.save_pretrained(tmp_path / "no-itc")
    ckpt, images, data = (
        ["--checkpoint", str(checkpoint)],
        ["--images", str(shop.parent / "images")],
        str(shop),
    )
    labels, out = ["--zero-shot", "colour=black,white"], ["--out", str(tmp_path / "t.jsonl")]
    cases = [
        ([*ckpt, "--images", str(tmp_path / "nowhere"), *labels, *out], 1, "nowhere: no such folder"),
        ([*ckpt, "--images", str(tmp_path), *labels, *out], 1, "no image files"),
        ([*ckpt, "--data", str(tmp_path / "no.csv"), *labels, *out], 1, "--data"),
        (["--checkpoint", str(tmp_path / "x"), *images, *labels, *out], 1, "--checkpoint"),
        (["--checkpoint", str(tmp_path / "no-itc"), *images, *labels, *out], 1, "no ITC heads"),
        ([*ckpt, *images, "--zero-shot", str(tmp_path / "missing.yaml"), *out], 1, "missing.yaml"),
        ([*ckpt, "--data", data, "--zero-shot", "colr,pattern", *out], 2, "unknown column(s) 'colr'"),
        ([*ckpt, "--data", data, "--zero-shot", "text", *out], 2, "'text' is not an attribute"),
        ([*ckpt, *images, "--zero-shot", "colour=", *out], 2, "--zero-shot 'colour=': no labels"),
        ([*ckpt, *images, "--zero-shot", "colour", *out], 2, "need --data"),
        ([*ckpt, *images, *labels, "--out", str(tmp_path / "t.txt")], 2, "--out"),
        ([*ckpt, *images, *labels, "--evaluate", *out], 2, "give --data"),
        ([*ckpt, "--data", data, *labels, "--evaluate", *out], 2, "--out is a folder"),
        ([*ckpt, *images, *labels, "--split", "test", *out], 2, "--split"),
        ([*ckpt, *images, *labels, "--prompt", "a photo", *out], 2, "{label}"),
    ]
    for argv, code, fragment in cases:
        assert tag(*argv) == code, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("mvlt tag: error: ") and fragment in err, (argv, err)
    assert not (tmp_path / "t.jsonl").exists()
    with pytest.raises(SystemExit) as exit_:
        tag(*ckpt, *images, *labels, *out, "--top-k", "0")
    assert exit_.value.code == 2
