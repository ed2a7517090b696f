from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from mvlt.data import Tokenizer
from mvlt.data.cli import register


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mvlt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_train_on_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tok"
    assert _run(["tokenizer", "train", "--data", "synthetic", "--vocab-size", "150", "--out", str(out)]) == 0
    tok = Tokenizer.load(out)
    assert tok.vocab_size <= 150 and tok.unk_id not in tok.encode("A red striped t-shirt with a crew neck.")
    assert "150" in capsys.readouterr().out or tok.vocab_size < 150
    assert _run(["tokenizer", "encode", "--tokenizer", str(out), "a red dress"]) == 0
    assert "red" in capsys.readouterr().out


def test_train_on_manifest_with_bad_rows(
    files: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = files.default_rows(6)
    rows[2]["text"] = ""
    path = files.write_csv(tmp_path / "m.csv", rows, images=False)  # images are not needed for texts
    out = str(tmp_path / "tok")
    assert _run(["tokenizer", "train", "--data", str(path), "--vocab-size", "60", "--out", out]) == 1  # data
    err = capsys.readouterr().err
    assert err.startswith("mvlt tokenizer train: error:") and "row 3 (line 4): empty text" in err
    argv = ["tokenizer", "train", "--data", str(path), "--vocab-size", "60", "--out", out, "--skip-bad-rows"]
    assert _run([*argv, "--split", "train"]) == 0
    assert "skipped 1 bad row" in capsys.readouterr().out
    assert _run([*argv, "--split", "all"]) == 0  # every row, as in every command
    assert "on 5 texts" in capsys.readouterr().out
    assert Tokenizer.load(out).encode("red")[1] != Tokenizer.load(out).unk_id


def test_encode_with_bert_vocab(bert_vocab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["tokenizer", "encode", "--vocab", str(bert_vocab), "a red t-shirt"]) == 0
    assert "[101, 1037, 2417, 1056, 1011, 3797, 102]" in capsys.readouterr().out
