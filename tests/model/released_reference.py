"""An independent, functional transcription of the released MVLT forward (test oracle only).

It reads a released-layout state dict directly (``block1.0.attn.q.weight``, ``t2i_head.*``, ...)
and computes with plain ``torch.nn.functional`` calls and a hand-written softmax attention, the
way the released code does: BERT input embeddings (token type 0, LayerNorm eps 1e-12), stage
position embeddings on the 224-px grid interpolated whenever the map is not 56 x 56 (stage 4
drops its first slot), no padding mask, block LayerNorm eps 1e-6, other LayerNorms 1e-5, the
erf GELU of the MLM head and the BatchNorm aggregation decoder in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HEADS = (1, 2, 5, 8)
SR = (8, 4, 2, 1)
PATCH = (4, 2, 2, 2)
GRID_224 = (56, 28, 14, 7)


def _ln(x: torch.Tensor, sd: dict, prefix: str, eps: float = 1e-5) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def _lin(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.linear(x, sd[prefix + ".weight"], sd.get(prefix + ".bias"))


def _attention(
    x: torch.Tensor, sd: dict, p: str, heads: int, sr: int, hw: tuple[int, int], t: int
) -> torch.Tensor:
    b, n, c = x.shape
    h, w = hw
    q = _lin(x, sd, p + "q").reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
    if sr > 1:
        xv, xt = torch.split(x, [h * w, t], dim=1)
        xv = xv.permute(0, 2, 1).reshape(b, c, h, w)
        xv = (
            F.conv2d(xv, sd[p + "sr.weight"], sd[p + "sr.bias"], stride=sr).reshape(b, c, -1).permute(0, 2, 1)
        )
        source = torch.cat((_ln(xv, sd, p + "norm"), xt), dim=1)
    else:
        source = x
    kv = _lin(source, sd, p + "kv").reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = ((q @ kv[0].transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
    return _lin((attn @ kv[1]).transpose(1, 2).reshape(b, n, c), sd, p + "proj")


def encode(sd: dict, images: torch.Tensor, input_ids: torch.Tensor) -> tuple[list, list]:
    t = input_ids.shape[1]
    y = sd["text_embeddings.word_embeddings.weight"][input_ids]
    y = y + sd["text_embeddings.token_type_embeddings.weight"][0]
    y = y + sd["text_embeddings.position_embeddings.weight"][:t]
    y = _ln(y, sd, "text_embeddings.LayerNorm", eps=1e-12)
    x, visual, text = images, [], []
    for i in range(4):
        k = i + 1
        x = F.conv2d(x, sd[f"patch_embed{k}.proj.weight"], sd[f"patch_embed{k}.proj.bias"], stride=PATCH[i])
        b, _, h, w = x.shape
        x = _ln(x.flatten(2).transpose(1, 2), sd, f"patch_embed{k}.norm")
        y = _ln(_lin(y, sd, f"text_embed{k}.0"), sd, f"text_embed{k}.1")
        pos = sd[f"pos_embed{k}"][:, 1:] if k == 4 else sd[f"pos_embed{k}"]
        if h * w != GRID_224[0] ** 2:  # the released test compares with stage 1's patch count
            g = GRID_224[i]
            pos = F.interpolate(pos.reshape(1, g, g, -1).permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
            pos = pos.reshape(1, -1, h * w).permute(0, 2, 1)
        z = torch.cat((x + pos, y + sd[f"text_pos_embed{k}"]), dim=1)
        for j in range(
            sum(1 for key in sd if key.startswith(f"block{k}.") and key.endswith(".norm1.weight"))
        ):
            p = f"block{k}.{j}."
            z = z + _attention(_ln(z, sd, p + "norm1", 1e-6), sd, p + "attn.", HEADS[i], SR[i], (h, w), t)
            z = z + _lin(F.gelu(_lin(_ln(z, sd, p + "norm2", 1e-6), sd, p + "mlp.fc1")), sd, p + "mlp.fc2")
        x, y = torch.split(z, [h * w, t], dim=1)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        visual.append(x)
        text.append(y)
    return visual, text


def itm_logits(sd: dict, text: list) -> torch.Tensor:
    h = _ln(_lin(text[-1][:, 0:1], sd, "itm_head_embed.0"), sd, "itm_head_embed.1")
    return (_lin(h, sd, "itm_head.linear") + sd["itm_head.linear_bias"]).view(-1, 2)


def mlm_logits(sd: dict, text: list) -> torch.Tensor:
    h = _ln(_lin(text[-1], sd, "mlm_head_embed.0"), sd, "mlm_head_embed.1")
    h = _lin(h, sd, "mlm_head.transform.dense")
    h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
    h = _ln(h, sd, "mlm_head.transform.LayerNorm")
    return F.linear(h, sd["mlm_head.mlm_decoder.weight"]) + sd["mlm_head.bias"]


def _conv_bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    x = F.conv2d(x, sd[p + ".0.weight"], padding=1)
    return F.batch_norm(
        x, sd[p + ".1.running_mean"], sd[p + ".1.running_var"], sd[p + ".1.weight"], sd[p + ".1.bias"], False
    )


def reconstruction(sd: dict, visual: list) -> torch.Tensor:
    def up(x: torch.Tensor, s: int = 2) -> torch.Tensor:
        return F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=True)

    p = "t2i_head."
    low, mid, high = (_conv_bn(visual[i], sd, p + f"reduction{i}") for i in (1, 2, 3))
    x2_1 = _conv_bn(up(high), sd, p + "conv_upsample1") * mid
    x3_1 = _conv_bn(up(mid), sd, p + "conv_upsample2") * _conv_bn(up(x2_1), sd, p + "conv_upsample3") * low
    x2_2 = _conv_bn(
        torch.cat((x2_1, _conv_bn(up(high), sd, p + "conv_upsample4")), 1), sd, p + "conv_concat2"
    )
    x3_2 = _conv_bn(
        torch.cat((x3_1, _conv_bn(up(x2_2), sd, p + "conv_upsample5")), 1), sd, p + "conv_concat3"
    )
    out = F.conv2d(_conv_bn(x3_2, sd, p + "conv4"), sd[p + "score.0.weight"], sd[p + "score.0.bias"])
    return up(out, 8)
