"""Evaluation says what it could not score: ``metrics.json`` records the catalogue's skipped rows,
duplicate product ids and unlabelled rows; recognition counts unlabelled items like unseen ones;
``--split all`` is every row, as in training."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

import mvlt
from mvlt.data import LabelMaps, bert_tokenizer, open_catalogue
from mvlt.eval import EvalOptions, evaluate
from mvlt.eval.cli import open_split
from mvlt.eval.context import EvalContext
from mvlt.eval.recognition import run_recognition
from mvlt.eval.runner import format_table

from .test_recognition import TinyCatalogue, TinyTokenizer


def write_manifest(folder: Path) -> Path:
    """Six rows: row 3 has no image, rows 2 and 5 share a product id, row 4 has no category."""
    rows = ["image,text,category,subcategory,product_id,split"]
    for i in range(6):
        category = "" if i == 3 else "Tops"
        product, split = ("p1" if i == 4 else f"p{i}"), ("test" if i else "train")
        rows.append(f"{i}.png,a striped shirt number {i},{category},Shirt,{product},{split}")
        if i != 2:
            Image.new("RGB", (20, 20), (10 * i, 80, 160)).save(folder / f"{i}.png")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder / "metadata.csv"


def test_metrics_json_records_what_the_catalogue_left_out(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    catalogue = open_catalogue(manifest, split="test", skip_bad_rows=True)
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=32)
    model.tokenizer = bert_tokenizer()
    options = EvalOptions(mig_images=1, mig_strategies=("center",), training_data={"items": 7})
    evaluate(model, catalogue, "generation", options, tmp_path / "eval")
    protocol = json.loads((tmp_path / "eval" / "metrics.json").read_text())["protocol"]
    data = protocol["data"]
    assert data["items"] == 4 and data["split"] == "test"
    assert data["skipped_rows"] == 1 and data["skipped_first"] == ["row 3 (line 4)"]
    assert data["duplicate_product_ids"] == 1 and data["duplicate_first"] == {"p1": 2}
    assert data["unlabelled"] == {"category": 1, "subcategory": 0}
    assert protocol["training_data"] == {"items": 7}


def test_unlabelled_items_are_counted_like_unseen_ones() -> None:
    maps = LabelMaps.build(["Shoes", "Tops"], ["Boot", "Shirt"])
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=32, num_categories=2, num_subcategories=2).eval()
    model.label_maps = maps
    cat = TinyCatalogue(["Shoes", "", "Tops", "Hats"], ["Boot", "Shirt", "", ""])
    ctx = EvalContext(model, cat, TinyTokenizer(), torch.device("cpu"), image_size=32, batch_size=2)
    with torch.inference_mode():
        out = run_recognition(ctx, range(4))
    assert out.metrics["mcr_items"] == 2 and out.metrics["mcr_unknown_items"] == 1
    assert out.metrics["mcr_unlabelled_items"] == 1 and out.metrics["scr_unlabelled_items"] == 2
    table = format_table({**out.metrics, "protocol": {}})
    assert "M-CR" in table and "1 with labels unseen in training and 1 without a label" in table


def test_evaluate_split_all_is_every_row(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    assert len(open_split(str(manifest), "all", skip_bad_rows=True)) == 5
    assert len(open_split(str(manifest), "test", skip_bad_rows=True)) == 4
