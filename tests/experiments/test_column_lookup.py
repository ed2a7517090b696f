"""``experiments/tagging/column_lookup.py``: a column predicted from others by a training lookup."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "tagging" / "column_lookup.py"
SPEC = importlib.util.spec_from_file_location("column_lookup", SCRIPT)
column_lookup = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(column_lookup)


def write_manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    lines = ["image,text,product_id,split,kind,colour,line"]
    lines += [f"{i}.jpg,t,{i},{','.join(row)}" for i, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lookup_decides_where_the_given_column_does_and_backs_off_where_unseen(tmp_path: Path):
    train = [("train", "coat", "black", "men")] * 3 + [("train", "dress", "red", "women")] * 5
    train += [("train", "coat", "red", "women")]
    test = [
        ("test", "coat", "black", "men"),  # seen: men
        ("test", "dress", "red", "women"),  # seen: women
        ("test", "coat", "green", "men"),  # (coat, green) unseen: backs off to coat -> men
        ("test", "shoe", "black", ""),  # empty target: left out, counted
    ]
    data = write_manifest(tmp_path / "m.csv", train + test)
    out = tmp_path / "r.json"
    args = ["--data", str(data), "--target", "line", "--given", "kind,colour", "--out", str(out)]
    record = column_lookup.main(args)
    assert record["majority"] == pytest.approx(1 / 3)  # "women", the training majority, once in three
    (lookup,) = record["lookups"]
    assert lookup["accuracy"] == 1.0 and lookup["unseen_combinations"] == 1 and lookup["empty_target"] == 1
    assert json.loads(out.read_text()) == record


def test_an_unknown_column_is_named(tmp_path: Path, capsys):
    rows = [("train", "coat", "black", "men"), ("test", "coat", "red", "men")]
    data = write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(SystemExit) as exit_:
        column_lookup.main(["--data", str(data), "--target", "line", "--given", "kind,fabric"])
    assert exit_.value.code == 2 and "fabric" in capsys.readouterr().err
