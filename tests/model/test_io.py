"""Checkpoint directories: bit-exact round trip, clear errors for broken or foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mvlt
from mvlt.model.io import CONFIG_NAME, WEIGHTS_NAME


@pytest.mark.parametrize("decoder", ["unet", "aggregation"])
def test_round_trip_is_bit_exact(tmp_path: Path, decoder: str) -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", decoder=decoder, num_categories=3, num_subcategories=5)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = mvlt.MVLT.from_pretrained(tmp_path)
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_round_trip_keeps_compat_official(tmp_path: Path) -> None:
    model = mvlt.create_model("mvlt_nano", compat="official")
    loaded = mvlt.MVLT.from_pretrained(model.save_pretrained(tmp_path))
    assert loaded.config.compat == "official" and loaded.num_parameters() == model.num_parameters()


def test_truncated_weights_name_the_file(tmp_path: Path) -> None:
    mvlt.create_model("mvlt_nano").save_pretrained(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(mvlt.CheckpointError, match=r"model\.safetensors is truncated"):
        mvlt.MVLT.from_pretrained(tmp_path)


def test_mismatch_names_missing_unexpected_and_misshaped(tmp_path: Path) -> None:
    mvlt.create_model("mvlt_nano", num_categories=3).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / WEIGHTS_NAME))
    del state["category_head.fc.bias"]
    state["surplus.weight"] = torch.zeros(1)
    state["category_head.fc.weight"] = torch.zeros(7, 128)
    save_file(state, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(mvlt.CheckpointError) as err:
        mvlt.MVLT.from_pretrained(tmp_path)
    message = str(err.value)
    assert "1 missing: category_head.fc.bias" in message
    assert "1 unexpected: surplus.weight" in message
    assert "category_head.fc.weight (checkpoint (7, 128), model (3, 128))" in message


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        mvlt.MVLT.from_pretrained(tmp_path / "nowhere")
    tmp_path.joinpath(CONFIG_NAME).write_text(json.dumps({"architecture": "mvlt", "config": {"depth": 3}}))
    with pytest.raises(ValueError, match=r"unknown MVLTConfig fields \['depth'\]"):
        mvlt.MVLT.from_pretrained(tmp_path)


def test_a_checkpoint_from_before_text_tag_heads_loads_without_them(tmp_path: Path) -> None:
    """Tag heads but no text tag heads (fine-tuned before they existed): it loads with none, never
    with random ones; a checkpoint missing only some of their tensors is still a mismatch."""
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=64, tag_classes={"colour": 3, "pattern": 2})
    assert list(model.text_tag_heads) == ["colour", "pattern"]
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / WEIGHTS_NAME))
    old = {k: v for k, v in state.items() if not k.startswith("text_tag_heads.")}
    assert len(old) < len(state)
    save_file(old, str(tmp_path / WEIGHTS_NAME))
    loaded = mvlt.MVLT.from_pretrained(tmp_path)
    assert len(loaded.text_tag_heads) == 0 and list(loaded.tag_heads) == ["colour", "pattern"]
    assert loaded.state_dict().keys() == old.keys()
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.eval().tag_logits(images)["colour"], model.eval().tag_logits(images)["colour"])
    with pytest.raises(ValueError, match="no text tag heads"):
        loaded.text_tag_logits(torch.ones(2, 4, dtype=torch.long))
    partial = {k: v for k, v in state.items() if k != "text_tag_heads.colour.fc.bias"}
    save_file(partial, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(mvlt.CheckpointError, match=r"1 missing: text_tag_heads\.colour\.fc\.bias"):
        mvlt.MVLT.from_pretrained(tmp_path)
