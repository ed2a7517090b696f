"""ITC's cross-batch memory in training (``itc_memory``): it waits for its start, and a resumed run
continues exactly because the memory is saved with the checkpoint (the memory itself:
tests/model/test_objectives.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import mvlt
from mvlt.train import ConfigError, train

from .helpers import same_weights, stopped_and_resumed, tiny_config


@pytest.mark.slow
def test_a_run_with_a_memory_resumes_exactly(tmp_path: Path, tokenizer_dir: Path, monkeypatch) -> None:
    settings = {"steps": 8, "checkpoint_every": 2, "itc_memory": 24, "itc_memory_start": 0.25,
                "objectives": ["itc", "itm"]}  # fmt: skip
    reference = train(tiny_config(tmp_path / "reference", tokenizer_dir, **settings))
    out = stopped_and_resumed(monkeypatch, tiny_config(tmp_path / "run", tokenizer_dir, **settings), 5)
    assert same_weights(out, reference.out)
    # The memory changes training, so a resume that lost it would not have matched.
    plain = train(tiny_config(tmp_path / "plain", tokenizer_dir, **{**settings, "itc_memory": 0}))
    assert not same_weights(plain.out, reference.out)


def test_the_memory_waits_for_its_start(tmp_path: Path, tokenizer_dir: Path, monkeypatch) -> None:
    seen = []
    original = mvlt.MVLT.forward_loss

    def forward_loss(self, *args, **kwargs):
        seen.append(kwargs.get("memory") is not None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mvlt.MVLT, "forward_loss", forward_loss)
    train(tiny_config(tmp_path / "run", tokenizer_dir, steps=8, itc_memory=16, itc_memory_start=0.5))
    assert seen == [False] * 4 + [True] * 4


def test_the_memory_needs_itc_and_a_start_inside_the_run(tmp_path: Path, tokenizer_dir: Path) -> None:
    for bad in ({"itc_memory": 8, "objectives": ["itm", "mlm"]}, {"itc_memory": -1},
                {"itc_memory": 8, "itc_memory_start": 1.0}):  # fmt: skip
        with pytest.raises(ConfigError, match="itc_memory"):
            tiny_config(tmp_path / "x", tokenizer_dir, **bad).validate()
