"""Kill and resume: SIGTERM mid-epoch, ``--resume``, and the same final weights as a run that
was never interrupted (fp32, bit for bit; dropout on, so the RNG states must be restored too)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mvlt.train import latest_checkpoint, train

from .helpers import run_cli, subprocess_env, tiny_args, tiny_config

STEPS = 20  # 6 steps per epoch: the run crosses three epoch boundaries


@pytest.mark.slow
def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path: Path, tokenizer_dir: Path):
    out = tmp_path / "killed"
    args = tiny_args(out, tokenizer_dir, "--steps", str(STEPS), "--checkpoint-every", "3", "--log-every", "1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvlt.train.cli", "pretrain", *args],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(out) is None:  # wait for the first checkpoint (step 3)
            assert proc.poll() is None, "the run ended before it could be killed: " + proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stdout + stderr  # 128 + SIGTERM: stopped early, on purpose
    assert "interrupted by SIGTERM" in stdout and "--resume" in stdout
    stopped = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())
    assert 3 <= stopped["step"] < STEPS and stopped["epoch_step"] != 0  # mid-epoch

    # Resume from the saved config alone (no other flags needed).
    resumed = run_cli(["pretrain", "--out", str(out), "--resume", "--no-progress"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {out / 'checkpoints'}/step-{stopped['step']:07d}" in resumed.stderr
    assert f"done: {STEPS}/{STEPS} steps" in resumed.stdout

    reference = train(tiny_config(tmp_path / "reference", tokenizer_dir, steps=STEPS, checkpoint_every=3))
    a, b = load_file(str(out / "model.safetensors")), load_file(str(reference.out / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)
    # The metric log has every step once, as if the run had never stopped.
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))
