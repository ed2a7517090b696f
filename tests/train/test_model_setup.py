"""The model a run builds: fine-tuned at another ``--image-size``, it says the size it was trained
at; a new pair head without the teachers that train it is refused."""

from __future__ import annotations

import pytest
import torch

import mvlt
from mvlt.model.io import load_state_checked
from mvlt.train import train
from mvlt.train.model_setup import resized_positions

from .helpers import tiny_config


def test_position_grids_resize_to_what_the_old_model_used_at_that_size():
    torch.manual_seed(0)
    old = mvlt.create_model("mvlt_nano", image_size=64, vocab_size=64)
    for stage in old.stages:  # non-trivial grids, so that the check can fail
        torch.nn.init.normal_(stage.pos_embed)
    new = mvlt.create_model("mvlt_nano", image_size=96, vocab_size=64)
    load_state_checked(new, resized_positions(old.state_dict(), new), "test")
    for before, after in zip(old.stages, new.stages, strict=True):
        assert after.pos_grid != before.pos_grid
        # the fine-tuned model starts from exactly the positions the old one used for 96-px inputs
        grid = after.pos_grid
        torch.testing.assert_close(after.visual_pos_embed(grid), before.visual_pos_embed(grid))
    same = resized_positions(old.state_dict(), old)
    assert all(torch.equal(same[k], v) for k, v in old.state_dict().items())


def test_a_new_pair_head_without_its_teachers_is_refused(tmp_path, tokenizer_dir):
    config = tiny_config(tmp_path / "run", tokenizer_dir, steps=1, model_overrides={"pair_head": True})
    with pytest.raises(ValueError, match=r"pair_head learns only from kd_image / kd_text"):
        train(config)
    assert not (tmp_path / "run" / "checkpoints").exists()
