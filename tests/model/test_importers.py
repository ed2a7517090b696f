"""Importers on synthetic state dicts built from the documented key layouts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.model.importers import official_filter_fn

from . import released_reference as released


def released_state_dict(keys_file: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the released 266-tensor layout (``{j}`` = 0..1), tied MLM decoder."""
    g = torch.Generator().manual_seed(seed)
    lines = keys_file.read_text().split("\n")
    assert lines[0].strip() == "266"
    state: dict[str, torch.Tensor] = {}
    for line in filter(None, (raw.strip() for raw in lines[1:])):
        name, shape_text = line.split(" ", 1)
        shape = tuple(int(v) for v in re.findall(r"\d+", shape_text))
        for j in (0, 1) if "{j}" in name else (None,):
            key = name.replace("{j}", str(j))
            if key.endswith("num_batches_tracked"):
                state[key] = torch.tensor(100)
            elif key.endswith("running_var"):
                state[key] = torch.rand(shape, generator=g) + 0.5
            elif re.search(r"(norm\d?|LayerNorm|\.1)\.weight$", key) and len(shape) == 1:
                state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
            else:
                state[key] = 0.05 * torch.randn(shape, generator=g)
    state["mlm_head.mlm_decoder.weight"] = state["text_embeddings.word_embeddings.weight"]
    assert len(state) == 266
    return state


def test_official_checkpoint_consumes_all_266_tensors(official_keys: Path, tmp_path: Path) -> None:
    state = released_state_dict(official_keys)
    path = tmp_path / "checkpoint_retrieval.pth"
    torch.save({"model": state}, path)
    model = mvlt.from_official_checkpoint(path)
    assert model.config.compat == "official" and model.num_parameters() == 40_025_089
    ours = model.state_dict()
    mapped = official_filter_fn(state)
    assert len(mapped) == 265 and set(mapped) == set(ours)  # 266 minus the tied decoder matrix
    assert all(torch.equal(ours[k], v) for k, v in mapped.items())


def test_official_recognition_heads_are_imported(official_keys: Path) -> None:
    state = released_state_dict(official_keys)
    for prefix, n in (("sup", 48), ("sub", 122)):
        state[f"{prefix}_cls_head_embed.0.weight"] = torch.randn(768, 512)
        state[f"{prefix}_cls_head_embed.0.bias"] = torch.randn(768)
        state[f"{prefix}_cls_head_embed.1.weight"] = torch.randn(768)
        state[f"{prefix}_cls_head_embed.1.bias"] = torch.randn(768)
        state[f"{prefix}_cls_head.linear.weight"] = torch.randn(n, 768)
        state[f"{prefix}_cls_head.linear.bias"] = torch.randn(n)
        state[f"{prefix}_cls_head.linear_bias"] = torch.randn(n)
    model = mvlt.from_official_checkpoint(state)
    assert model.category_head.num_classes == 48 and model.subcategory_head.num_classes == 122
    assert torch.equal(model.subcategory_head.extra_bias, state["sub_cls_head.linear_bias"])


def test_official_checkpoint_errors(official_keys: Path) -> None:
    state = released_state_dict(official_keys)
    untied = dict(state, **{"mlm_head.mlm_decoder.weight": torch.zeros_like(state["mlm_head.bias"][:, None])})
    with pytest.raises(mvlt.CheckpointError, match="not tied"):
        mvlt.from_official_checkpoint(untied)
    with pytest.raises(mvlt.CheckpointError, match=r"cannot place: \['mystery.weight'\]"):
        mvlt.from_official_checkpoint(dict(state, **{"mystery.weight": torch.zeros(1)}))
    missing = {k: v for k, v in state.items() if k != "block3.1.mlp.fc2.bias"}
    with pytest.raises(mvlt.CheckpointError, match=r"1 missing: stages\.2\.blocks\.1\.mlp\.fc2\.bias"):
        mvlt.from_official_checkpoint(missing)


@pytest.mark.parametrize("size", [224, 256])
def test_official_forward_matches_the_released_computation(official_keys: Path, size: int) -> None:
    state = released_state_dict(official_keys, seed=1)
    model = mvlt.from_official_checkpoint(state).eval()
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, size, size, generator=g)
    ids = torch.zeros(2, 128, dtype=torch.long)  # the released model always sees 128 tokens
    ids[:, :20] = torch.randint(1000, 30000, (2, 20), generator=g)
    ids[:, 0], ids[:, 19] = 101, 102
    with torch.no_grad():
        visual, text = released.encode(state, images, ids)
        out = model.forward_encoder(images, ids)
        pairs = [
            *zip(out.visual, visual),
            *zip(out.text, text),
            (model.itm_logits(out), released.itm_logits(state, text)),
            (model.mlm_logits(out.text[-1]), released.mlm_logits(state, text)),
            (model.forward_decoder(out.visual), released.reconstruction(state, visual)),
        ]
    for ours, theirs in pairs:
        # Random weights make the decoder's products large: compare relative to each output's scale.
        scale = theirs.abs().max().item()
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


def pvt_state_dict(model: mvlt.MVLT, grid_size: int = 224) -> dict[str, torch.Tensor]:
    """A ``pvt_tiny.pth``-style state dict for ``model``'s backbone (224-px grid, class slot)."""
    state: dict[str, torch.Tensor] = {"cls_token": torch.randn(1, 1, 512), "norm.weight": torch.ones(512)}
    state |= {
        "norm.bias": torch.zeros(512),
        "head.weight": torch.randn(1000, 512),
        "head.bias": torch.zeros(1000),
    }
    for k, stage in enumerate(model.stages, start=1):
        for name, value in stage.patch_embed.state_dict().items():
            state[f"patch_embed{k}.{name}"] = torch.randn_like(value)
        for name, value in stage.blocks.state_dict().items():
            state[f"block{k}.{name}"] = torch.randn_like(value)
        g = grid_size // model.config.strides[k - 1]
        state[f"pos_embed{k}"] = torch.randn(1, g * g + (k == 4), stage.pos_embed.shape[-1])
    return state


def test_pvt_backbone_loads_and_reports(tmp_path: Path) -> None:
    model = mvlt.create_model("mvlt_tiny", image_size=224)
    state = pvt_state_dict(model)
    torch.save(state, tmp_path / "pvt_tiny.pth")
    before = model.stages[0].text_proj[0].weight.clone()
    report = mvlt.load_pvt_backbone(model, tmp_path / "pvt_tiny.pth")
    assert report.ignored == ["cls_token", "head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert len(report.matched) == len(state) - 5 and report.resized == []
    assert torch.equal(model.stages[1].blocks[1].attn.kv.weight, state["block2.1.attn.kv.weight"])
    assert torch.equal(model.stages[3].pos_embed, state["pos_embed4"][:, 1:])  # class slot dropped
    assert torch.equal(model.stages[0].text_proj[0].weight, before)
    assert "stages.0.text_proj.0.weight" in report.not_in_backbone and "PVT backbone" in str(report)


def test_pvt_position_embeddings_are_resized_to_the_model_grid() -> None:
    model = mvlt.create_model("mvlt_tiny", image_size=256)
    report = mvlt.load_pvt_backbone(model, pvt_state_dict(model))
    assert report.resized == [f"stages.{k}.pos_embed" for k in range(4)]
    assert model.stages[0].pos_embed.shape == (1, 64 * 64, 64)


def test_pvt_missing_or_misshaped_backbone_tensor_raises() -> None:
    model = mvlt.create_model("mvlt_tiny", image_size=224)
    state = pvt_state_dict(model)
    del state["block3.0.mlp.fc1.weight"]
    with pytest.raises(mvlt.CheckpointError, match=r"1 missing: stages\.2\.blocks\.0\.mlp\.fc1\.weight"):
        mvlt.load_pvt_backbone(model, state)
    state = pvt_state_dict(model)
    state["block1.0.attn.q.weight"] = torch.randn(32, 64)
    with pytest.raises(mvlt.CheckpointError, match=r"mis-shaped: stages\.0\.blocks\.0\.attn\.q\.weight"):
        mvlt.load_pvt_backbone(model, state)
    with pytest.raises(mvlt.CheckpointError, match="not a PVT-v1 state dict"):
        mvlt.load_pvt_backbone(model, dict(state, **{"mystery": torch.zeros(1)}))
