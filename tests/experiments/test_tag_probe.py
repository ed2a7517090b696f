"""The frozen-teacher tagging probe (``experiments/pretrained/tag_probe.py``): its held-out slice is
a stable function of the product id, and its softmax regression and selection learn a separable
problem (the teacher features themselves are covered by ``tests/train/teachers``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def load_probe():
    path = ROOT / "experiments" / "pretrained" / "tag_probe.py"
    spec = importlib.util.spec_from_file_location("tag_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_slice_is_stable_and_about_the_asked_share():
    probe = load_probe()
    groups = [f"product-{i}" for i in range(2000)]
    first, again = probe.held_out(groups), probe.held_out(list(reversed(groups)))
    assert torch.equal(first, again.flip(0))
    assert 0.12 < first.float().mean().item() < 0.18


def test_probe_learns_a_separable_problem_and_selection_uses_the_held_out_rows():
    probe = load_probe()
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=generator) * 3
    y = torch.randint(0, 3, (600,), generator=generator)
    x = centres[y] + torch.randn(600, 16, generator=generator)
    val = probe.held_out([str(i) for i in range(600)])
    epochs, weight_decay, held_out_acc = probe.choose(x, y, val, 3, seed=0)
    assert epochs in probe.EPOCHS and weight_decay in probe.WEIGHT_DECAYS
    assert held_out_acc > 0.9
    fitted = probe.fit_probe(x, y, 3, epochs, weight_decay, seed=0)[epochs]
    with torch.no_grad():
        assert (fitted(x).argmax(-1) == y).float().mean() > 0.9


def test_a_missing_manifest_is_named_without_a_traceback(tmp_path: Path):
    script = ROOT / "experiments" / "pretrained" / "tag_probe.py"
    args = ["--data", str(tmp_path / "nope.csv"), "--columns", "colour", "--out", str(tmp_path / "o")]
    run = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert run.returncode == 2
    assert "nope.csv" in run.stderr and "Traceback" not in run.stderr
