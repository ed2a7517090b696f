"""Importers of foreign weights: ImageNet PVT-v1 backbones and the authors' MVLT checkpoints.

Both read ``.pth`` files with ``torch.load(weights_only=True)`` (no arbitrary unpickling), rename
keys with a ``*_filter_fn`` (as timm does) and refuse to load anything partial: every tensor of
the target must be filled and, for the released checkpoints, every source tensor consumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .io import CheckpointError, describe_mismatch
from .mvlt import MVLT

StateDict = dict[str, torch.Tensor]


def read_torch_state_dict(source: str | Path | StateDict) -> StateDict:
    """A raw state dict from a ``.pth`` path (unwrapping ``{'model': ...}``) or a dict as is."""
    if isinstance(source, dict):
        state = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a truncated or foreign file
            raise CheckpointError(f"cannot read {path} as a PyTorch state dict: {err}") from err
    for wrapper in ("model", "state_dict"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("checkpoint is not a flat mapping of tensor names to tensors")
    return dict(state)


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], extra_slots: int) -> tuple[torch.Tensor, bool]:
    """Fit a ``1 x (e + g*g) x D`` position embedding to ``1 x (extra_slots + h*w) x D``.

    Leading slots beyond the square grid (PVT's class-token slot) are dropped unless the target
    keeps ``extra_slots`` of them; the grid is resized bilinearly when its size differs.
    Returns the embedding and whether its grid was resized.
    """
    n, dim = pos.shape[1], pos.shape[2]
    side = int((n - extra_slots) ** 0.5)
    lead = n - side * side
    if side * side + lead != n or lead not in (0, 1):
        raise CheckpointError(f"position embedding with {n} slots is not a square grid (+1)")
    head, body = pos[:, :lead], pos[:, lead:]
    resized = (side, side) != tuple(grid)
    if resized:
        body = body.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        body = F.interpolate(body, size=grid, mode="bilinear", align_corners=False)
        body = body.flatten(2).transpose(1, 2)
    if extra_slots:
        head = head if lead else torch.zeros(1, extra_slots, dim, dtype=pos.dtype)
        return torch.cat((head, body), dim=1), resized
    return body, resized


# ------------------------------------------------------------------------------ PVT-v1 (ImageNet)
PVT_IGNORED = re.compile(r"^(cls_token|norm\..*|head\..*)$")
_PVT_STAGE_KEY = re.compile(r"^(patch_embed|pos_embed|block)(\d)(.*)$")


@dataclass
class BackboneReport:
    """What ``load_pvt_backbone`` did with each tensor."""

    matched: list[str] = field(default_factory=list)
    """Model tensors filled from the checkpoint."""
    ignored: list[str] = field(default_factory=list)
    """Checkpoint tensors with no place in MVLT (class token, final norm, classifier)."""
    resized: list[str] = field(default_factory=list)
    """Model position embeddings interpolated from the checkpoint's grid."""
    not_in_backbone: list[str] = field(default_factory=list)
    """Model tensors a PVT checkpoint does not have (text side, heads, decoder): left as initialised."""

    def __str__(self) -> str:
        return (
            f"PVT backbone: {len(self.matched)} tensors loaded ({len(self.resized)} position embeddings "
            f"resized), {len(self.ignored)} ignored ({', '.join(self.ignored) or '-'}), "
            f"{len(self.not_in_backbone)} model tensors not part of the backbone"
        )


def pvt_filter_fn(state: StateDict, model: MVLT) -> tuple[StateDict, list[str], list[str]]:
    """Rename PVT-v1 keys to MVLT's; returns ``(mapped, ignored, resized)``. Unknown keys raise."""
    targets = model.state_dict()
    mapped: StateDict = {}
    ignored, resized, unknown = [], [], []
    for key, value in state.items():
        if PVT_IGNORED.match(key):
            ignored.append(key)
            continue
        m = _PVT_STAGE_KEY.match(key)
        if not m or not 1 <= int(m.group(2)) <= len(model.stages):
            unknown.append(key)
            continue
        kind, k, rest = m.group(1), int(m.group(2)) - 1, m.group(3)
        stage = model.stages[k]
        if kind == "pos_embed":
            name = f"stages.{k}.pos_embed"
            value, was_resized = resize_pos_embed(value, stage.pos_grid, stage.pos_extra_slots)
            if was_resized:
                resized.append(name)
        elif kind == "block":
            name = f"stages.{k}.blocks{rest}"
        else:
            name = f"stages.{k}.patch_embed{rest}"
        mapped[name] = value
    if unknown:
        raise CheckpointError(f"not a PVT-v1 state dict: unexpected tensors {sorted(unknown)[:12]}")
    backbone = {k for k in targets if _is_backbone(k)}
    problem = describe_mismatch(
        {k: targets[k].shape for k in backbone}, {k: v.shape for k, v in mapped.items()}
    )
    if problem:
        raise CheckpointError(f"PVT checkpoint does not fit the visual backbone: {problem}")
    return mapped, ignored, resized


def _is_backbone(name: str) -> bool:
    return name.startswith("stages.") and (".text_proj." not in name and not name.endswith("text_pos_embed"))


def load_pvt_backbone(model: MVLT, source: str | Path | StateDict) -> BackboneReport:
    """Initialise the visual pyramid from ImageNet PVT-v1 weights (``pvt_tiny.pth``-style).

    Maps ``patch_embed{i}.*``, ``pos_embed{i}`` (resized to the model's grid) and
    ``block{i}.{j}.*``; ignores ``cls_token``, ``norm.*`` and ``head.*``. Raises when a backbone
    tensor is missing or mis-shaped. Returns (and the CLI prints) the key report.
    """
    mapped, ignored, resized = pvt_filter_fn(read_torch_state_dict(source), model)
    params = dict(model.state_dict())
    with torch.no_grad():
        for name, value in mapped.items():
            params[name].copy_(value)
    return BackboneReport(
        matched=sorted(mapped),
        ignored=sorted(ignored),
        resized=sorted(resized),
        not_in_backbone=sorted(k for k in params if k not in mapped),
    )


# ------------------------------------------------------------------ the authors' MVLT checkpoints
_OFFICIAL_RENAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^pos_embed(\d)$"), r"stages.{0}.pos_embed"),
    (re.compile(r"^text_pos_embed(\d)$"), r"stages.{0}.text_pos_embed"),
    (re.compile(r"^patch_embed(\d)\.(.*)$"), r"stages.{0}.patch_embed.{1}"),
    (re.compile(r"^text_embed(\d)\.(.*)$"), r"stages.{0}.text_proj.{1}"),
    (re.compile(r"^block(\d)\.(.*)$"), r"stages.{0}.blocks.{1}"),
]
_OFFICIAL_PREFIXES = [
    ("text_embeddings.LayerNorm.", "text_embed.norm."),
    ("text_embeddings.", "text_embed."),
    ("mlm_head_embed.", "mlm_head.embed."),
    ("mlm_head.transform.dense.", "mlm_head.dense."),
    ("mlm_head.transform.LayerNorm.", "mlm_head.norm."),
    ("mlm_head.bias", "mlm_head.bias"),
    ("itm_head_embed.", "itm_head.embed."),
    ("itm_head.linear.", "itm_head.fc."),
    ("itm_head.linear_bias", "itm_head.extra_bias"),
    ("sup_cls_head_embed.", "category_head.embed."),
    ("sup_cls_head.linear.", "category_head.fc."),
    ("sup_cls_head.linear_bias", "category_head.extra_bias"),
    ("sub_cls_head_embed.", "subcategory_head.embed."),
    ("sub_cls_head.linear.", "subcategory_head.fc."),
    ("sub_cls_head.linear_bias", "subcategory_head.extra_bias"),
    ("t2i_head.", "decoder."),
]
OFFICIAL_TIED_KEY = "mlm_head.mlm_decoder.weight"
OFFICIAL_BUFFERS = ("text_embeddings.position_ids",)


def official_filter_fn(state: StateDict) -> StateDict:
    """Rename a released MVLT state dict to this implementation's keys. Every tensor is consumed:
    the tied MLM decoder matrix is checked against the word embedding, and anything that cannot be
    mapped raises."""
    out: StateDict = {}
    unmapped = []
    for key, value in state.items():
        if key in OFFICIAL_BUFFERS:
            continue
        if key == OFFICIAL_TIED_KEY:
            words = state.get("text_embeddings.word_embeddings.weight")
            if words is None or not torch.equal(words, value):
                raise CheckpointError(f"{key} is not tied to text_embeddings.word_embeddings.weight")
            continue
        name = _official_name(key)
        if name is None:
            unmapped.append(key)
        else:
            out[name] = value
    if unmapped:
        raise CheckpointError(
            f"released checkpoint has tensors this importer cannot place: {sorted(unmapped)}"
        )
    return out


def _official_name(key: str) -> str | None:
    for pattern, template in _OFFICIAL_RENAMES:
        m = pattern.match(key)
        if m:
            stage = int(m.group(1)) - 1
            return template.format(stage, *m.groups()[1:])
    for old, new in _OFFICIAL_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def official_config_overrides(state: StateDict) -> dict[str, Any]:
    """Depths, vocabulary and recognition classes read off a released state dict."""
    depths = []
    for k in range(1, 5):
        blocks = {int(m.group(1)) for key in state if (m := re.match(rf"^block{k}\.(\d+)\.", key))}
        if not blocks:
            raise CheckpointError(f"released checkpoint has no block{k}.* tensors")
        depths.append(max(blocks) + 1)
    words = state.get("text_embeddings.word_embeddings.weight")
    if words is None:
        raise CheckpointError("released checkpoint has no text_embeddings.word_embeddings.weight")
    overrides: dict[str, Any] = {
        "depths": tuple(depths),
        "vocab_size": words.shape[0],
        "word_embed_dim": words.shape[1],
        "max_text_len": state["text_pos_embed1"].shape[1],
    }
    if "sup_cls_head.linear.weight" in state:
        overrides["num_categories"] = state["sup_cls_head.linear.weight"].shape[0]
    if "sub_cls_head.linear.weight" in state:
        overrides["num_subcategories"] = state["sub_cls_head.linear.weight"].shape[0]
    return overrides


def from_official_checkpoint(source: str | Path | StateDict, **overrides: Any) -> MVLT:
    """Build the ``compat="official"`` model and load an authors' checkpoint into it.

    The result reproduces the released forward: BERT-style text input, 224-grid position
    embeddings interpolated to the input size, no padding mask (feed 128-token inputs as the
    released code does), the aggregation decoder and the released head layout.
    """
    from .registry import create_model

    state = read_torch_state_dict(source)
    config = {**official_config_overrides(state), "compat": "official", **overrides}
    model = create_model("mvlt_tiny", **config)
    mapped = official_filter_fn(state)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    problem = describe_mismatch(expected, {k: v.shape for k, v in mapped.items()})
    if problem:
        raise CheckpointError(f"released checkpoint does not fit the official-compatible model: {problem}")
    model.load_state_dict(mapped, strict=True)
    return model
