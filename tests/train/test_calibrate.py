"""``--precision auto`` in training: the timed pass leaves no trace, the choice is printed and cached.

The CPU flag and the timings are faked, so these tests behave alike on every CPU and run one bf16
pass at most (emulated bf16 is ~100x slower on CPUs without native support).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mvlt
from mvlt import runtime
from mvlt.runtime import Precision
from mvlt.train import train
from mvlt.train.calibrate import training_workload

from ..model.test_model import make_batch
from .helpers import tiny_config


class _OneBatch:
    """The two methods of a training dataset that the timed pass uses."""

    image_size = 32

    def __init__(self, batch: dict) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, items: list) -> dict:
        return self.batch


def test_the_timed_pass_leaves_no_trace() -> None:
    """Weights, gradients, batch-norm statistics (the released decoder) and the random streams
    are as before, in either precision."""
    torch.manual_seed(0)
    model = mvlt.create_model(
        "mvlt_nano", image_size=32, vocab_size=2000, compat="official", text_dropout=0.1
    )
    weights = {"mir": 10.0, "itm": 1.0, "mlm": 1.0}
    forward = {"weights": mvlt.LossWeights(), "use_masked_images": True, "itm_negatives": "data"}
    dataset = _OneBatch(make_batch(4, 32, 8, vocab=2000))
    workload = training_workload(model, dataset, 4, torch.device("cpu"), weights, forward)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    for name in ("fp32", "bf16"):
        workload.run(Precision(name, "test", "cpu"))
        assert all(p.grad is None for p in model.parameters())
        assert torch.equal(torch.get_rng_state(), rng)
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert workload.kind == "training" and workload.shape["micro_batch"] == 4
    assert workload.shape["objectives"] == "mir=10,itm=1,mlm=1"


def test_auto_reports_its_measured_choice(tmp_path: Path, tokenizer_dir: Path, monkeypatch) -> None:
    """On a CPU with native bf16 the banner says what was measured, the next run reads the cache,
    and the measuring run trains exactly like one told the same precision."""
    passes: list[str] = []

    def fake_timing(workload: runtime.Workload, device_type: str) -> dict[str, float]:
        for name in ("fp32", "bf16"):
            workload.run(Precision(name, "calibration", device_type))
            passes.append(name)
        return {"fp32": 1.0, "bf16": 1.05}  # bf16 a little slower: auto keeps fp32

    monkeypatch.setenv("MVLT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda cpuinfo=None: "avx512_bf16")
    monkeypatch.setattr(runtime, "time_precisions", fake_timing)
    auto = train(tiny_config(tmp_path / "auto", tokenizer_dir, steps=2, batch_size=4, precision="auto"))
    banner = (tmp_path / "auto" / "train.log").read_text()
    assert "precision fp32 (auto: bf16 measured 0.95x as fast as fp32, under the 1.1x it needs" in banner
    assert "it needs; training pass 1 s in fp32, 1.05 s in bf16; measured now, cached in" in banner
    assert passes == ["fp32", "bf16"]
    train(tiny_config(tmp_path / "again", tokenizer_dir, steps=1, batch_size=4, precision="auto"))
    assert "cached in" in (tmp_path / "again" / "train.log").read_text() and len(passes) == 2
    fp32 = train(tiny_config(tmp_path / "fp32", tokenizer_dir, steps=2, batch_size=4, precision="fp32"))
    assert auto.losses == pytest.approx(fp32.losses, rel=0, abs=0)
