"""Checkpoint directories, keep-last-K, RNG states and the resumable sampler."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

import mvlt
from mvlt.train import checkpoint as ckpt
from mvlt.train.data import ResumableSampler


def _save(out: Path, model: mvlt.MVLT, step: int, keep: int = 2) -> Path:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(_batch(model)).get("total").backward()
    opt.step()
    return ckpt.save_checkpoint(out, model, opt, {"step": step}, [ckpt.capture_rng()], keep=keep)


def _batch(model: mvlt.MVLT) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (2, 6), generator=g)
    return {
        "images": torch.rand(2, 3, 64, 64, generator=g),
        "input_ids": ids,
        "itm_labels": torch.tensor([0, 1]),
        "mlm_labels": torch.where(ids % 3 == 0, ids, -100),
    }


def test_save_keep_last_k_and_load(tmp_path: Path):
    model = mvlt.create_model("mvlt_nano", vocab_size=40, image_size=64)
    for step in (2, 4, 6):
        _save(tmp_path, model, step)
    (tmp_path / "checkpoints" / ".step-0000008.tmp-123").mkdir()  # a save killed half-way
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-0000004", "step-0000006"]
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest == ckpt.step_dir(tmp_path, 6)
    # A step directory is itself a loadable model, and the training state loads without pickles.
    assert isinstance(mvlt.MVLT.from_pretrained(latest), mvlt.MVLT)
    fresh = mvlt.create_model("mvlt_nano", vocab_size=40, image_size=64)
    state = ckpt.load_checkpoint(latest, fresh)
    assert state.step == 6 and "state" in state.optimizer["optimizer"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    ckpt.remove_stale_temporaries(tmp_path)
    assert not (tmp_path / "checkpoints" / ".step-0000008.tmp-123").exists()


def test_rng_states_round_trip(tmp_path: Path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.save([ckpt.capture_rng()], tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)[0])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert (
        torch.equal(expected[0], again[0])
        and np.array_equal(expected[1], again[1])
        and expected[2] == again[2]
    )


def test_sampler_global_batches_do_not_depend_on_world_size():
    """Step k's global batch is the same items on 1 or 2 ranks; a window skips whole steps."""
    data, batch = list(range(53)), 8
    single = ResumableSampler(data, 1, 0, seed=5)
    single.set_epoch(3)
    order = list(single)
    assert sorted(order) == sorted(set(order)) and len(order) == 53
    ranks = [ResumableSampler(data, 2, r, seed=5) for r in range(2)]
    shares = []
    for s in ranks:
        s.set_epoch(3)
        shares.append(list(s))
    for step in range(53 // batch):
        half = batch // 2
        union = shares[0][step * half : (step + 1) * half] + shares[1][step * half : (step + 1) * half]
        assert sorted(union) == sorted(order[step * batch : (step + 1) * batch])
    single.window(2 * batch, 5 * batch)
    assert list(single) == order[2 * batch : 5 * batch] and len(single) == 3 * batch
    single.set_epoch(4)
    assert list(single) != order[2 * batch : 5 * batch]  # a new epoch, a new order
