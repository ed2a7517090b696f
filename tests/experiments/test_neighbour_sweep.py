"""``experiments/tagging/neighbour_sweep.py``: every (k, temperature, weight) scored from one pass."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ..tagging.conftest import write_headed_checkpoint, write_tagged_catalogue

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "tagging" / "neighbour_sweep.py"
SPEC = importlib.util.spec_from_file_location("neighbour_sweep", SCRIPT)
neighbour_sweep = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(neighbour_sweep)


def test_the_grid_is_scored_and_weight_zero_is_the_heads_alone(tmp_path: Path):
    shop = write_tagged_catalogue(tmp_path / "shop")
    checkpoint = write_headed_checkpoint(tmp_path / "ckpt", shop)
    out = tmp_path / "sweep.json"
    record = neighbour_sweep.main([
        "--checkpoint", str(checkpoint), "--data", str(shop), "--split", "test", "--k", "1,3",
        "--temperature", "0.05", "--weight", "0,1", "--out", str(out),
    ])  # fmt: skip
    assert out.is_file() and record["memory_photos"] == 12 and len(record["settings"]) == 4
    for setting in record["settings"]:
        if setting["weight"] == 0:
            assert setting["accuracy"] == pytest.approx(record["heads"]["accuracy"])
    assert record["best"]["mean"] == max(s["mean"] for s in record["settings"])


def test_the_memory_cannot_be_the_scored_split(tmp_path: Path):
    with pytest.raises(SystemExit) as exit_:
        neighbour_sweep.main(["--checkpoint", str(tmp_path), "--data", "x.csv", "--split", "train",
                              "--out", str(tmp_path / "o.json")])  # fmt: skip
    assert exit_.value.code == 2


def test_a_missing_checkpoint_is_named(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_:
        neighbour_sweep.main(["--checkpoint", str(tmp_path / "nope"), "--data", "x.csv", "--split", "val",
                              "--out", str(tmp_path / "o.json")])  # fmt: skip
    assert exit_.value.code == 2 and "nope: no such checkpoint directory" in capsys.readouterr().err
