"""``evaluate`` and ``mvlt evaluate`` end to end: a small synthetic catalogue, then the H&M test split."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mvlt
from mvlt.eval import cli as eval_cli
from mvlt.eval.retrieval import RetrievalProtocol
from mvlt.eval.run import EvalOptions
from mvlt.eval.runner import evaluate


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mvlt")
    eval_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", *argv])
    return args.run(args)


def assert_self_contained(report: str) -> None:
    sources = re.findall(r"src=['\"]([^'\"]*)['\"]", report)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert "http://" not in report and "https://" not in report and "<link" not in report


# ------------------------------------------------------------------------------ small, no data
class SmallCatalogue:
    """12 products in 2 sub-categories with generated pictures: enough for every task."""

    source, split = "small", "test"

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        n = 12
        self.product_ids = [f"{i:04d}" for i in range(n)]
        self.texts = [f"a {'red' if i % 2 else 'blue'} garment number {i}" for i in range(n)]
        self.subcategories = ["Top" if i < 7 else "Shirt" for i in range(n)]
        self.categories = ["Upper"] * n
        self.pictures = [Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int):
        class Item:
            image = self.pictures[i]

        return Item()


class WordTokenizer:
    pad_id, sep_id = 0, 102

    def encode_batch(self, texts):
        return [[101, *(1000 + sum(map(ord, w)) % 5000 for w in t.split()), 102] for t in texts]


def test_all_tasks_skip_recognition_without_heads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=32)
    options = EvalOptions(
        retrieval=RetrievalProtocol(queries=6, negatives=5), mig_images=3, mig_strategies=("center", "stroke")
    )
    metrics = evaluate(model, SmallCatalogue(), "all", options, tmp_path, tokenizer=WordTokenizer())
    assert "mcr_acc" not in metrics
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert "recognition heads" in written["skipped_tasks"]["recognition"]
    assert written["tir_r1_1p5_subcat"] == metrics["tir_r1_1p5_subcat"]
    assert written["retrieval_topped_up_1p5_subcat"] > 0  # "Shirt" has only 4 other products
    assert {"mig_psnr_center", "mig_ssim_masked_stroke"} <= written.keys()
    assert_self_contained((tmp_path / "report.html").read_text())
    with pytest.raises(ValueError, match="no recognition heads"):
        evaluate(model, SmallCatalogue(), "recognition", options, None, tokenizer=WordTokenizer())
    with pytest.raises(ValueError, match="no tokenizer"):
        evaluate(model, SmallCatalogue(), "retrieval", options, None)


# --------------------------------------------------------------------------------------- H&M
@pytest.fixture(scope="module")
def hm_checkpoint(tmp_path_factory, hm_dir: Path, bert_vocab: Path) -> Path:
    """A random-init ``mvlt_nano`` at 64 px with recognition heads, the BERT tokenizer and the H&M
    training split's label maps, saved like a fine-tuned checkpoint."""
    from mvlt.data.labels import LabelMaps
    from mvlt.data.sources import open_catalogue
    from mvlt.data.tokenizer import Tokenizer

    maps = LabelMaps.from_catalogue(open_catalogue(hm_dir, split="train"))
    torch.manual_seed(0)
    model = mvlt.create_model(
        "mvlt_nano",
        image_size=64,
        num_categories=maps.num_categories,
        num_subcategories=maps.num_subcategories,
    )
    model.tokenizer = Tokenizer.from_vocab(bert_vocab)
    model.label_maps = maps
    return model.save_pretrained(tmp_path_factory.mktemp("hm") / "checkpoint")


def test_evaluate_hm_end_to_end(hm_checkpoint: Path, hm_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    common = ["--checkpoint", str(hm_checkpoint), "--data", str(hm_dir), "--split", "test", "--threads", "2"]
    rc = run_cli(
        [*common, "--out", str(out), "--queries", "8", "--negatives", "20", "--recognition-items", "24",
         "--mig-images", "3", "--examples", "2", "--no-progress"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    assert "TIR" in printed and "ITR" in printed and "M-CR" in printed and "random_grid" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for direction in ("tir", "itr"):
        for stat in ("r1", "r5", "r10", "sumr", "mean_rank"):
            assert 0 <= metrics[f"{direction}_{stat}_1p20_subcat"] <= 200
    assert metrics["retrieval_queries_1p20_subcat"] == 8
    for field in ("mcr", "scr"):
        assert {
            f"{field}_acc",
            f"{field}_macro_f1",
            f"{field}_sumc",
            f"{field}_unknown_items",
        } <= metrics.keys()
    for strategy in ("random_grid", "grid", "stroke", "center"):
        for stat in ("psnr", "ssim", "psnr_masked", "ssim_masked"):
            assert isinstance(metrics[f"mig_{stat}_{strategy}"], float)
    protocol = metrics["protocol"]
    # ``auto`` is fp32 on a CPU without native bf16 and the faster measured one on a CPU with it:
    # the record and the printed table say which, and why.
    from mvlt.eval import format_table
    from mvlt.runtime import cpu_has_native_bf16

    assert protocol["split"] == "test" and protocol["precision_requested"] == "auto"
    allowed = ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",)
    assert protocol["precision"] in allowed
    assert protocol["precision_reason"].startswith("auto: ")
    assert f"arithmetic: {protocol['precision']} (auto: " in format_table(metrics)
    assert protocol["retrieval"]["negatives"] == 20 and protocol["retrieval"]["ties"] == "pessimistic"
    report = (out / "report.html").read_text()
    assert_self_contained(report)
    assert "data:image/png;base64" in report  # the confusion matrices
    assert "1 + 20 candidates" in report and "pairs/s" in report
    recognition = json.loads((out / "recognition.json").read_text())
    assert len(recognition["subcategory"]["confusion"]) == len(recognition["subcategory"]["classes"])

    # The saved lists re-run exactly, whatever the other retrieval flags say.
    again = tmp_path / "again"
    lists = out / "retrieval_candidates.json"
    rc = run_cli(
        [*common, "--out", str(again), "--task", "retrieval", "--candidates", str(lists), "--seed", "7"]
    )
    assert rc == 0
    rerun = json.loads((again / "metrics.json").read_text())
    for key, value in metrics.items():
        if key.startswith(("tir_", "itr_")):
            assert rerun[key] == pytest.approx(value, abs=1e-12), key
    assert json.loads(lists.read_text())["repeats"] == json.loads((again / lists.name).read_text())["repeats"]


def test_cli_errors_name_the_flag(hm_checkpoint: Path, hm_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["--checkpoint", str(hm_checkpoint), "--data", str(hm_dir), "--out", str(tmp_path)]
    # Exit 1: what a flag points at is missing or bad; exit 2: the command line itself is wrong.
    assert run_cli([*base, "--candidates", str(tmp_path / "none.json")]) == 1
    assert "--candidates" in capsys.readouterr().err
    assert run_cli([*base, "--task", "ranking"]) == 2
    assert "--task: unknown task 'ranking'" in capsys.readouterr().err
    assert run_cli([*base, "--split", "nosuch"]) == 1
    assert "no rows in split 'nosuch'" in capsys.readouterr().err
    assert run_cli([*base, "--split", "test", "--hub-bank", "10", "--hub-split", "test"]) == 2
    assert "--hub-split test: the bank must not hold the evaluated products" in capsys.readouterr().err
    assert (
        run_cli(["--checkpoint", str(tmp_path / "nope"), "--data", str(hm_dir), "--out", str(tmp_path)]) == 1
    )
    assert "--checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli([*base, "--topup", "nearby"])
