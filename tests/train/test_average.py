"""The weights' moving average (``ema_decay``): its arithmetic, that it leaves training alone, that
the output folder holds it while each step checkpoint keeps the raw weights, and that a resumed
run averages exactly as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mvlt.exits import UsageError
from mvlt.train import ConfigError, train
from mvlt.train.average import WeightAverage
from mvlt.train.checkpoint import step_dir

from .helpers import same_weights, stopped_and_resumed, tiny_config


def _layer(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(value)
    return layer


def test_the_decay_warms_up_then_holds() -> None:
    average = WeightAverage(_layer(0.0), 0.9)
    assert average.decay_at(0) == 0.0  # the first step's weights replace the initial ones
    assert average.decay_at(3) == pytest.approx(3 / 4)  # the mean of the first four steps
    assert average.decay_at(9) == pytest.approx(0.9)
    assert average.decay_at(1000) == 0.9


def test_an_update_folds_in_the_new_weights_by_one_minus_the_decay() -> None:
    layer = _layer(0.0)
    average = WeightAverage(layer, 0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average.update(layer, 1000)  # decay 0.9
    assert torch.allclose(average.shadow["weight"], torch.full((2, 2), 0.1))
    assert torch.equal(average.shadow["bias"], torch.zeros(2))
    average.update(layer, 1)  # decay 1/2: the mean of the two
    assert torch.allclose(average.shadow["weight"], torch.full((2, 2), (0.1 + 1.0) / 2))
    average.update(layer, 0)  # decay 0: the new weights alone
    assert torch.equal(average.shadow["weight"], layer.weight)


def test_applied_lends_the_average_and_gives_the_weights_back() -> None:
    layer = _layer(0.0)
    average = WeightAverage(layer, 0.5)
    with torch.no_grad():
        layer.weight.fill_(2.0)
    with average.applied(layer):
        assert torch.equal(layer.weight, torch.zeros(2, 2))
    assert torch.equal(layer.weight, torch.full((2, 2), 2.0))
    restored = WeightAverage(_layer(5.0), 0.5)
    restored.load_state_dict(average.state_dict())
    assert torch.equal(restored.shadow["weight"], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="missing"):
        restored.load_state_dict({"weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(layer, 1.0)


@pytest.mark.slow
def test_the_output_is_the_average_and_a_resumed_run_matches(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch
) -> None:
    settings = {"steps": 8, "checkpoint_every": 1, "keep_checkpoints": 8, "ema_decay": 0.6,
                "objectives": ["itc", "itm"]}  # fmt: skip
    reference = train(tiny_config(tmp_path / "reference", tokenizer_dir, **settings))
    plain = train(tiny_config(tmp_path / "plain", tokenizer_dir, **{**settings, "ema_decay": 0.0}))
    # Training reads the raw weights, so the averaged run's step checkpoint is the plain run's model.
    assert same_weights(step_dir(reference.out, 8), plain.out)
    assert not same_weights(reference.out, plain.out)
    # The output is the step-7 average with the step-8 weights folded in at decay min(0.6, 7 / 8).
    before = torch.load(step_dir(reference.out, 7) / "optimizer.pt", weights_only=True)["average"]
    raw = load_file(str(step_dir(reference.out, 8) / "model.safetensors"))
    saved = load_file(str(reference.out / "model.safetensors"))
    d = 0.6
    checked = [key for key in before if key in saved]
    assert len(checked) > 10
    for key in checked:
        assert torch.allclose(saved[key], d * before[key] + (1 - d) * raw[key], atol=1e-6), key
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)
    out = stopped_and_resumed(monkeypatch, tiny_config(tmp_path / "run", tokenizer_dir, **settings), 5)
    assert same_weights(out, reference.out)
    with pytest.raises(UsageError, match="without a weight average"):
        train(tiny_config(tmp_path / "plain", tokenizer_dir, **{**settings, "steps": 10}), resume=True)


def test_the_decay_must_be_a_fraction_below_one(tmp_path: Path, tokenizer_dir: Path) -> None:
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="ema_decay"):
            tiny_config(tmp_path / "x", tokenizer_dir, ema_decay=bad).validate()
