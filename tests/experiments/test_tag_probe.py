"""The frozen-teacher tagging probe script (``experiments/pretrained/tag_probe.py``); the probe itself
(held-out slice, softmax regression, selection) is tested in ``tests/train/test_tag_distillation.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_manifest_is_named_without_a_traceback(tmp_path: Path):
    script = ROOT / "experiments" / "pretrained" / "tag_probe.py"
    args = ["--data", str(tmp_path / "nope.csv"), "--columns", "colour", "--out", str(tmp_path / "o")]
    run = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert run.returncode == 2
    assert "nope.csv" in run.stderr and "Traceback" not in run.stderr


def test_image_and_text_side_by_side(monkeypatch) -> None:
    """``--modality image+text`` (the recognition reference) reads both teachers' features, image first."""
    monkeypatch.syspath_prepend(str(ROOT / "experiments" / "pretrained"))
    monkeypatch.delitem(sys.modules, "tag_probe", raising=False)
    import tag_probe
    import torch

    cached = {"image": torch.zeros(3, 1280), "text": torch.ones(3, 384)}
    monkeypatch.setattr(tag_probe, "teacher_features", lambda catalogue, cache: cached)
    both = tag_probe.features(object(), "image+text", None)
    assert both.shape == (3, 1664) and both[:, :1280].sum() == 0 and both[:, 1280:].min() == 1
    assert tag_probe.features(object(), "text", None).shape == (3, 384)
