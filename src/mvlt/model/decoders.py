"""MIR decoders: the visual pyramid V^1..V^4 back to a ``B x 3 x H x W`` image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import MVLTConfig


def _up2(x: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=align_corners)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that normalises a reduced-precision channels-last map on a CPU in the
    NCHW layout, and hands it back channels-last.

    The encoder hands the decoder channels-last maps (views of its tokens), on which PyTorch's
    CPU bf16 GroupNorm is slow (forward + backward at 256 px, batch 8: 64 ms, against 14 ms on
    NCHW and 70 ms normalising in fp32, the first fix); the convolutions around it run faster
    channels-last, so the map goes to NCHW and back (U-Net decoder forward + backward under bf16
    autocast, 2 threads: ``python benchmarks/bf16_kernels.py --parts decoder``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 or x.device.type != "cpu" or x.is_contiguous():
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)


class ConvGNAct(nn.Sequential):
    """3x3 conv + GroupNorm + GELU. GroupNorm keeps the decoder independent of the batch split,
    so multi-process training matches single-process training."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            GroupNorm(min(8, cout), cout),
            nn.GELU(),
        )


class UNetDecoder(nn.Module):
    """The paper's decoder: a 4-level U-Net over V^1..V^4, then two x2 steps to full resolution.

    From V^4, each level upsamples x2, concatenates the next shallower V^k and fuses with a conv
    block; two more upsample + conv steps reach the input resolution, a 1x1 conv gives RGB.
    """

    def __init__(self, embed_dims: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        n = len(embed_dims)
        fuse, cin = [], embed_dims[-1]
        for k in range(n - 2, -1, -1):  # V^3, V^2, V^1
            cout = channels[n - 2 - k]
            fuse.append(ConvGNAct(cin + embed_dims[k], cout))
            cin = cout
        self.fuse = nn.ModuleList(fuse)
        self.refine = nn.ModuleList(
            [ConvGNAct(channels[n - 2], channels[n - 1]), ConvGNAct(channels[n - 1], channels[n])]
        )
        self.head = nn.Conv2d(channels[n], 3, kernel_size=1)

    def forward(self, visual: Sequence[torch.Tensor]) -> torch.Tensor:
        x = visual[-1]
        for skip, fuse in zip(reversed(visual[:-1]), self.fuse):
            x = fuse(torch.cat((_up2(x), skip), dim=1))
        for refine in self.refine:
            x = refine(_up2(x))
        return self.head(x)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))


class AggregationDecoder(nn.Module):
    """The decoder actually released: aggregates V^2..V^4 at 1/8 resolution, then upsamples x8.

    Submodule names are the released ``t2i_head``'s so its weights load one to one. It cannot
    render detail finer than about 8 px; kept for ``compat="official"`` and for comparison.
    """

    def __init__(self, embed_dims: Sequence[int], channel: int = 64) -> None:
        super().__init__()
        self.reduction1 = _conv_bn(embed_dims[1], channel)
        self.reduction2 = _conv_bn(embed_dims[2], channel)
        self.reduction3 = _conv_bn(embed_dims[3], channel)
        self.conv_upsample1 = _conv_bn(channel, channel)
        self.conv_upsample2 = _conv_bn(channel, channel)
        self.conv_upsample3 = _conv_bn(channel, channel)
        self.conv_upsample4 = _conv_bn(channel, channel)
        self.conv_upsample5 = _conv_bn(2 * channel, 2 * channel)
        self.conv_concat2 = _conv_bn(2 * channel, 2 * channel)
        self.conv_concat3 = _conv_bn(3 * channel, 3 * channel)
        self.conv4 = _conv_bn(3 * channel, 3 * channel)
        self.score = nn.Sequential(nn.Conv2d(3 * channel, 3, 1))

    def forward(self, visual: Sequence[torch.Tensor]) -> torch.Tensor:
        low, mid, high = self.reduction1(visual[1]), self.reduction2(visual[2]), self.reduction3(visual[3])
        x2_1 = self.conv_upsample1(_up2(high, True)) * mid
        x3_1 = self.conv_upsample2(_up2(mid, True)) * self.conv_upsample3(_up2(x2_1, True)) * low
        x2_2 = self.conv_concat2(torch.cat((x2_1, self.conv_upsample4(_up2(high, True))), 1))
        x3_2 = self.conv_concat3(torch.cat((x3_1, self.conv_upsample5(_up2(x2_2, True))), 1))
        out = self.score(self.conv4(x3_2))
        return F.interpolate(out, scale_factor=8, mode="bilinear", align_corners=True)


def build_decoder(config: MVLTConfig) -> nn.Module:
    if config.decoder == "aggregation":
        return AggregationDecoder(config.embed_dims)
    return UNetDecoder(config.embed_dims, config.decoder_channels)
