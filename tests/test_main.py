"""``python -m mvlt`` is the ``mvlt`` command."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_mvlt_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mvlt", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for command in ("pretrain", "finetune", "evaluate", "demo"):
        assert command in done.stdout
