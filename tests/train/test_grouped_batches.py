"""``batch_groups``: global batches built from blocks of items that share a sub-category, so that
ITC's in-batch negatives (and the ITM negatives it mines) are look-alikes, as in the 1 + K
protocol; the order stays a pure function of (seed, epoch) and independent of the world size."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mvlt.data import open_catalogue
from mvlt.train import ConfigError, TrainConfig, train
from mvlt.train.data import ResumableSampler, grouped_order

from .helpers import NUM_PRODUCTS, tiny_config

LABELS = ["a"] * 11 + ["b"] * 9 + ["c"] * 3 + ["d"] * 7  # 30 items: remainders 3, 1, 3, 3


def test_grouped_order_is_a_permutation_of_same_label_blocks_then_mixed_ones():
    order = grouped_order(LABELS, 4, seed=0)
    assert sorted(order) == list(range(len(LABELS)))
    blocks = [order[k : k + 4] for k in range(0, len(order), 4)]
    pure = [b for b in blocks if len({LABELS[i] for i in b}) == 1]
    # a: 2 full blocks, b: 2, c: 0, d: 1 -> 5 pure blocks; the 10 leftovers make 2 mixed + 2 at the end
    assert len(pure) == 5 and len(blocks[-1]) == 2
    assert Counter(LABELS[b[0]] for b in pure) == Counter({"a": 2, "b": 2, "d": 1})
    assert grouped_order(LABELS, 4, seed=0) == order and grouped_order(LABELS, 4, seed=1) != order


def test_grouped_sampler_batches_do_not_depend_on_world_size_and_windows_skip_steps():
    data, batch = list(range(len(LABELS))), 8
    single = ResumableSampler(data, 1, 0, seed=5, groups=LABELS, block=4)
    single.set_epoch(2)
    order = list(single)
    assert order == grouped_order(LABELS, 4, 7)[: len(order)] and len(order) == 30
    ranks = [ResumableSampler(data, 2, r, seed=5, groups=LABELS, block=4) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    shares = [list(s) for s in ranks]
    for step in range(len(data) // batch):
        half = batch // 2
        union = shares[0][step * half : (step + 1) * half] + shares[1][step * half : (step + 1) * half]
        assert sorted(union) == sorted(order[step * batch : (step + 1) * batch])
    single.window(batch, 3 * batch)
    assert list(single) == order[batch : 3 * batch]
    with pytest.raises(ValueError, match="one group label per item"):
        ResumableSampler(data, 1, 0, seed=5, groups=LABELS[:-1], block=4)


def test_batch_groups_must_tile_the_batch():
    with pytest.raises(ConfigError, match=r"batch_groups.*must divide --batch-size 64"):
        TrainConfig(batch_groups=24).validate()
    with pytest.raises(ConfigError, match=r"batch_groups.*negative"):
        TrainConfig(batch_groups=-1).validate()
    TrainConfig(batch_groups=16).validate()


def test_a_run_with_grouped_batches_trains_and_says_so(tmp_path: Path, tokenizer_dir: Path):
    config = tiny_config(tmp_path / "run", tokenizer_dir, steps=3, batch_groups=4, objectives=["itc", "itm"])
    result = train(config)
    assert result.steps == 3 and result.losses["itc"] > 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "batches of 4-item same-sub-category blocks" in log
    catalogue = open_catalogue("synthetic", split="train", num_products=NUM_PRODUCTS, image_size=64)
    assert len(set(catalogue.subcategories)) > 1  # so that grouping changes the batches
