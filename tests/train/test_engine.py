"""The training loop in one process: learning, the input schedule, outputs, the NaN guard and
fine-tuning (frozen and end to end)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mvlt
from mvlt.train import NonFiniteLossError, RunExistsError, latest_checkpoint, train

from .helpers import tiny_config


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_loss_goes_down_on_the_synthetic_catalogue(tmp_path: Path, tokenizer_dir: Path, capsys):
    """40 steps (fixed seed) of the paper's MIR + ITM + MLM: the total and the MIR and MLM parts fall.

    Measured (seed 0, first vs last 5-step window): total 8.8 -> 6.3, MIR 0.286 -> 0.117,
    MLM 5.11 -> 4.4. ITM needs far longer to leave chance (0.69) and is not asserted.
    """
    cfg = tiny_config(tmp_path / "run", tokenizer_dir, steps=40, log_every=5, checkpoint_every=20,
                      tensorboard=True, warmup_steps=2, lr=4e-3, recipe="paper")  # fmt: skip
    result = train(cfg)
    first, last = _metrics(cfg_out := Path(cfg.out))[0], _metrics(cfg_out)[-1]
    assert [r["step"] for r in _metrics(cfg_out)] == list(range(5, 45, 5))
    assert last["loss/total"] < 0.8 * first["loss/total"]
    assert last["loss/mir"] < 0.6 * first["loss/mir"] and last["loss/mlm"] < 0.95 * first["loss/mlm"]
    assert result.steps == 40 and result.losses["total"] == pytest.approx(last["loss/total"])
    # What the user sees: the one-line summary; what stays: a loadable model, logs, config.
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("mvlt pretrain done: 40/40 steps") and str(cfg_out) in out and "mlm" in out
    model = mvlt.MVLT.from_pretrained(cfg_out)
    assert model.tokenizer is not None and model.label_maps is not None
    assert any((cfg_out / "tensorboard").iterdir())
    assert "lr: 0.004" in (cfg_out / "config.yaml").read_text()
    assert sorted(p.name for p in (cfg_out / "checkpoints").iterdir()) == ["step-0000020", "step-0000040"]


def test_input_schedules(tmp_path: Path, tokenizer_dir: Path, monkeypatch):
    """``alternate``: even steps clean images, odd steps masked (released code); ``masked``: always."""
    seen: list[bool] = []
    original = mvlt.MVLT.forward_loss

    def spy(self, batch, weights=None, use_masked_images=True, **kwargs):
        seen.append(use_masked_images)
        assert "masked_images" in batch and weights.mir == 10
        return original(self, batch, weights, use_masked_images, **kwargs)

    monkeypatch.setattr(mvlt.MVLT, "forward_loss", spy)
    train(tiny_config(tmp_path / "a", tokenizer_dir, steps=4, accumulation=2, recipe="paper"))
    assert seen == [False, False, True, True, False, False, True, True]
    seen.clear()
    train(tiny_config(tmp_path / "m", tokenizer_dir, steps=2, input_schedule="masked", recipe="paper"))
    assert seen == [True, True]


def test_non_finite_loss_stops_with_a_clear_message(tmp_path: Path, tokenizer_dir: Path, monkeypatch):
    calls = {"n": 0}
    original = mvlt.MVLT.forward_loss

    def poisoned(self, batch, weights=None, use_masked_images=True, **kwargs):
        losses = original(self, batch, weights, use_masked_images, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 3:  # from step 3 on
            losses["mlm"] = losses["mlm"] * float("nan")
        return losses

    monkeypatch.setattr(mvlt.MVLT, "forward_loss", poisoned)
    cfg = tiny_config(tmp_path / "run", tokenizer_dir, steps=6, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 \(.*mlm=nan") as err:
        train(cfg)
    assert "step-0000002" in str(err.value)
    assert latest_checkpoint(cfg.out).name == "step-0000002"  # the last good checkpoint is kept
    good = load_file(str(Path(cfg.out) / "checkpoints" / "step-0000002" / "model.safetensors"))
    root = load_file(str(Path(cfg.out) / "model.safetensors"))
    assert all(torch.equal(good[k], root[k]) and torch.isfinite(root[k]).all() for k in good)


def test_refuses_to_mix_runs(tmp_path: Path, tokenizer_dir: Path):
    cfg = tiny_config(tmp_path / "run", tokenizer_dir, steps=1)
    train(cfg)
    with pytest.raises(RunExistsError, match="--resume"):
        train(cfg)
    assert train(cfg, overwrite=True).steps == 1
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train(cfg.replace(out=str(tmp_path / "empty")), resume=True)


def _groups(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        groups.setdefault(key.split(".")[0], {})[key] = value
    return groups


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}


def test_frozen_finetune_changes_only_the_heads(tmp_path: Path, tokenizer_dir: Path, pretrained: Path):
    cfg = tiny_config(tmp_path / "ft", None, task="finetune", init=str(pretrained), image_size=None,
                      freeze_encoder=True, steps=3, checkpoint_every=1, keep_checkpoints=5)  # fmt: skip
    train(cfg)
    init = load_file(str(pretrained / "model.safetensors"))
    tuned = mvlt.MVLT.from_pretrained(cfg.out)
    labels = tuned.label_maps
    assert (tuned.config.num_categories, tuned.config.num_subcategories) == (
        labels.num_categories,
        labels.num_subcategories,
    ) and labels.num_categories > 1
    after = tuned.state_dict()
    # Everything the pre-trained model had is bit-for-bit unchanged: encoder and pre-training heads.
    assert _changed(init, after) == set()
    # The new heads trained: they differ between the first and the last step.
    first = load_file(str(Path(cfg.out) / "checkpoints" / "step-0000001" / "model.safetensors"))
    assert _changed(first, after) == {"category_head", "subcategory_head"}
    assert tuned.tokenizer == mvlt.MVLT.from_pretrained(pretrained).tokenizer
    assert tuned.config.image_size == 64


def test_end_to_end_finetune_trains_the_encoder_too(tmp_path: Path, pretrained: Path):
    """The paper's recipe (default): encoder and heads train; the pre-training heads, whose
    objectives are off, stay as they were."""
    cfg = tiny_config(tmp_path / "ft", None, task="finetune", init=str(pretrained),
                      image_size=None, steps=2)  # fmt: skip
    train(cfg)
    init = load_file(str(pretrained / "model.safetensors"))
    after = mvlt.MVLT.from_pretrained(cfg.out).state_dict()
    assert _changed(init, after) == {"text_embed", "stages"}
    assert {"category_head", "subcategory_head"} <= set(_groups(after)) - set(_groups(init))


def test_explicit_bf16_runs_on_cpu(tmp_path: Path, tokenizer_dir: Path):
    """``--precision bf16`` works everywhere (``auto`` avoids it on CPUs without native bf16)."""
    result = train(tiny_config(tmp_path / "bf16", tokenizer_dir, steps=1, batch_size=4, precision="bf16"))
    assert result.steps == 1 and torch.isfinite(torch.tensor(result.losses["total"]))


def test_time_budget_stops_with_a_resumable_checkpoint(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch
) -> None:
    """``max_minutes`` ends the run after the current step, with a checkpoint and no error."""
    import mvlt.train.engine as engine

    clock = iter(range(0, 100_000, 40))  # every perf_counter call advances 40 s
    monkeypatch.setattr(engine.time, "perf_counter", lambda: float(next(clock)))
    result = train(tiny_config(tmp_path / "run", tokenizer_dir, steps=50, max_minutes=2.0))
    assert result.interrupted == engine.TIME_BUDGET
    assert 0 < result.steps < 50 and result.checkpoint is not None and result.checkpoint.exists()
