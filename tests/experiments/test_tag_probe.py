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
