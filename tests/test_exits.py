"""One exit-code convention across commands (``mvlt.exits``, written in the README): 1 when what
the command line points at is bad (data, files, checkpoints), 2 when the command line is wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mvlt.data.errors import DataError
from mvlt.exits import FAILED, INTERRUPTED, USAGE, UsageError, exit_code, fail
from mvlt.model.io import CheckpointError
from mvlt.train import ConfigError, NonFiniteLossError, RunExistsError
from mvlt.train.resume import NothingToResumeError

from .test_readme import README


def test_every_error_kind_has_its_code(capsys) -> None:
    for err in (DataError("x.csv", "row 1", "bad_image", "broken"), FileNotFoundError("x"),
                CheckpointError("x"), NonFiniteLossError("x")):  # fmt: skip
        assert exit_code(err) == FAILED == 1, err
    for err in (UsageError("x"), ConfigError("x"), RunExistsError("x"), NothingToResumeError("x")):
        assert exit_code(err) == USAGE == 2, err
    assert isinstance(NothingToResumeError("x"), FileNotFoundError)  # still what callers caught
    assert INTERRUPTED == {"SIGINT": 130, "SIGTERM": 143}
    assert fail("evaluate", DataError("x.csv", "row 3", "bad_image", "truncated")) == 1
    assert capsys.readouterr().err == "mvlt evaluate: error: x.csv, row 3: truncated\n"


def run(argv: list[str]) -> int:
    """One ``mvlt`` command in this process, with only the command modules of this issue."""
    from mvlt import demo
    from mvlt.data import cli as data_cli
    from mvlt.eval import cli as eval_cli
    from mvlt.train import cli as train_cli

    parser = argparse.ArgumentParser(prog="mvlt")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (train_cli, eval_cli, data_cli, demo):
        module.register(sub)
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_commands_agree(tmp_path: Path, capsys) -> None:
    nope, out = str(tmp_path / "nope.csv"), str(tmp_path / "out")
    bad_data = {
        "pretrain": ["pretrain", "--data", nope, "--out", out],
        "finetune": ["finetune", "--init", out, "--data", nope, "--out", out],
        "evaluate": ["evaluate", "--checkpoint", out, "--data", nope, "--out", out],
        "tokenizer": ["tokenizer", "train", "--data", nope, "--vocab-size", "50", "--out", out],
        "demo": ["demo", "--data", nope, "--out", out],
    }
    for command, argv in bad_data.items():
        assert run(argv) == 1, command
        err = capsys.readouterr().err
        assert err.startswith(f"mvlt {argv[0]}") and ": error: " in err and err.count("\n") == 1, err
    bad_usage = {
        "pretrain": ["pretrain", "--lr", "nan", "--out", out],
        "finetune": ["finetune", "--data", "synthetic", "--out", out],  # no --init
        "evaluate": ["evaluate", "--checkpoint", out, "--data", nope, "--out", out, "--task", "ranking"],
        "demo": ["demo", "--image-size", "30", "--out", out],
    }
    for command, argv in bad_usage.items():
        assert run(argv) == 2, command
        assert capsys.readouterr().err.startswith(f"mvlt {command}: error: "), command
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage errors exit 2 as well
        run(["tokenizer", "train", "--data", nope, "--vocab-size", "many", "--out", out])
    assert exit_.value.code == 2


def test_the_readme_writes_the_convention_down() -> None:
    text = README.read_text(encoding="utf-8")
    for row in ("| 0 | done", "| 1 | the command line is fine but what it points at is not",
                "| 2 | the command line is wrong", "| 130 / 143 | stopped by Ctrl-C / SIGTERM"):  # fmt: skip
        assert row in text, row
