"""Fine-tuning at another ``--image-size``: the saved model says the size it was trained at."""

from __future__ import annotations

import torch

import mvlt
from mvlt.model.io import load_state_checked
from mvlt.train.model_setup import resized_positions


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
