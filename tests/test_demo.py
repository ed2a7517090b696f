"""``mvlt demo``: Ctrl-C leaves a resumable run, and ``--resume`` finishes it with the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--products", "80", "--image-size", "64", "--batch-size", "4", "--queries", "3", "--workers", "0",
        "--threads", "2"]  # fmt: skip


def demo(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mvlt.cli", "demo", "--out", str(out), *TINY, *extra]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        demo(out, "--minutes", "0.3"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while not list((out / "pretrain" / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # checkpoints every 100 steps: interrupt once the first one exists
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-2000:]
    assert f"mvlt demo --out {out} --resume" in stdout
    plan = json.loads((out / "demo.json").read_text())
    assert not (out / "report.html").exists()

    done = subprocess.run(demo(out, "--resume"), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads((out / "demo.json").read_text()) == plan  # the same plan, not a new one
    assert (out / "report.html").is_file() and (out / "metrics.json").is_file()
    state = json.loads(
        (
            out
            / "pretrain"
            / "checkpoints"
            / sorted(p.name for p in (out / "pretrain" / "checkpoints").iterdir())[-1]
            / "trainer_state.json"
        ).read_text()
    )
    assert state["step"] == plan["pretrain_steps"]


def test_refuses_to_mix_demos(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text("{}")
    result = subprocess.run(demo(out), capture_output=True, text=True)
    assert result.returncode == 2 and "--resume" in result.stderr
    empty = subprocess.run(demo(tmp_path / "none", "--resume"), capture_output=True, text=True)
    assert empty.returncode == 2 and "nothing to resume" in empty.stderr
