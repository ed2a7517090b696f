"""The kernel choices behind bf16 training on CPUs, each against what it replaced.

    python benchmarks/bf16_kernels.py [--threads N] [--reps N] [--parts ...] [--json FILE]

Forward + backward of the ``mvlt_tiny`` shapes at 256 px, batch 8, fp32 and bf16 autocast:
1. the strided convolutions (4 patch embeddings, 3 spatial reductions): ``nn.Conv2d`` against
   ``patch_tokens`` (one GEMM over the patches, on the token layout the encoder has);
2. attention of the four stages (~150 keys after spatial reduction): PyTorch's SDPA and the first
   written-out form (``bmm``, scale, mask fill, softmax, ``bmm``) against ``attention`` (scale and
   mask carried by a ``baddbmm``);
3. the U-Net decoder on channels-last maps (as the encoder hands them): ``nn.GroupNorm`` in bf16
   and the first fix (normalise in fp32) against the decoder's ``GroupNorm`` (bf16 on NCHW);
4. one AdamW step over all ``mvlt_tiny`` parameters (any precision: the weights are fp32):
   PyTorch's ``foreach`` implementation against its fused kernel (``train.optim.build_optimizer``).
Each figure is the best of ``--reps`` measurements, the variants alternating: CPU time on one
thread (``time.process_time``: another process on the machine slows it less than wall time), wall
time on more (run those on a quiet machine). The glibc allocator is tuned as by ``mvlt``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mvlt
from common import machine, write_json
from mvlt.model.config import PAPER_DESIGN
from mvlt.model.layers import attention, patch_tokens
from mvlt.runtime import malloc_tuning
from mvlt.train.optim import build_optimizer

B = 8
PARTS = ("convs", "attention", "decoder", "optimizer")
STRIDED = [(3, 64, 4, 256), (64, 64, 8, 64), (64, 128, 2, 64), (128, 128, 4, 32), (128, 320, 2, 32),
           (320, 320, 2, 16), (320, 512, 2, 16)]  # fmt: skip
"""(in, out, kernel = stride, input size): the patch embeddings and spatial reductions at 256 px."""
ATTENTION = [(1, 4173), (2, 1101), (5, 333), (8, 141)]
"""(heads, queries) of the four stages; 141 keys (64 reduced visual + 77 text), 64 dims a head."""


def best_seconds(variants: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Best seconds of each variant, one warm-up call each, the variants alternating."""
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    for fn in variants.values():
        fn()
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(reps):
        for name, fn in variants.items():
            start = clock()
            fn()
            best[name] = min(best[name], clock() - start)
    return best


def autocast(bf16: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def strided_pass(x: torch.Tensor, conv: nn.Conv2d, bf16: bool, use_matmul: bool) -> None:
    with autocast(bf16):
        out = patch_tokens(x, conv)[0] if use_matmul else conv(x).flatten(2).transpose(1, 2)
    out.backward(torch.ones_like(out))


def strided(bf16: bool, reps: int) -> dict[str, float]:
    total = {"conv2d": 0.0, "patch_tokens": 0.0}
    for cin, cout, k, size in STRIDED:
        conv = nn.Conv2d(cin, cout, k, stride=k)
        tokens = torch.randn(B, size * size, cin)  # the encoder's layout; a map is a view of it
        x = tokens.unflatten(1, (size, size)).permute(0, 3, 1, 2).requires_grad_(True)
        variants = {name: partial(strided_pass, x, conv, bf16, name == "patch_tokens") for name in total}
        seconds = best_seconds(variants, reps)
        total = {name: total[name] + seconds[name] for name in total}
    return total


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def separate_scale_and_mask(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The written-out attention as first shipped: two more passes over the scores."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def attention_step(fn: Callable[..., torch.Tensor], leaves: list[torch.Tensor], mask: torch.Tensor) -> None:
    out = fn(*(t.transpose(1, 2) for t in leaves), mask)
    out.backward(torch.ones_like(out))


def attention_pass(bf16: bool, reps: int) -> dict[str, float]:
    dtype = torch.bfloat16 if bf16 else torch.float32
    variants = {"sdpa": sdpa, "separate_scale_and_mask": separate_scale_and_mask, "baddbmm": attention}
    total = dict.fromkeys(variants, 0.0)
    for heads, n in ATTENTION:
        mask = torch.ones(B, 1, 1, 141, dtype=torch.bool)
        mask[..., -30:] = torch.rand(B, 1, 1, 30) > 0.5  # padded text keys
        # Heads as the model hands them: views of B x tokens x heads x 64 projections (strided).
        leaves = [torch.randn(B, m, heads, 64, dtype=dtype, requires_grad=True) for m in (n, 141, 141)]
        steps = {name: partial(attention_step, fn, leaves, mask) for name, fn in variants.items()}
        seconds = best_seconds(steps, reps)
        total = {name: total[name] + seconds[name] for name in total}
    return total


class Fp32GroupNorm(nn.GroupNorm):
    """The first fix: normalise bf16 input in fp32 (two casts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.float()).to(x.dtype)


def decoder(reps: int) -> dict[str, float]:
    """bf16 only: in fp32 the decoder's GroupNorm is ``nn.GroupNorm`` itself."""
    model = mvlt.create_model("mvlt_tiny", image_size=256, **PAPER_DESIGN)
    dims, sizes = model.config.embed_dims, (64, 32, 16, 8)
    maps = [torch.randn(B, s * s + 60, c)[:, : s * s].unflatten(1, (s, s)).permute(0, 3, 1, 2)
            for c, s in zip(dims, sizes)]  # fmt: skip
    target = torch.rand(B, 3, 256, 256)
    norms = [m for m in model.decoder.modules() if isinstance(m, nn.GroupNorm)]
    ours = type(norms[0])

    def run(norm_class: type) -> None:
        for norm in norms:
            norm.__class__ = norm_class
        feats = [f.clone().requires_grad_(True) for f in maps]
        with autocast(True):
            out = model.decoder(feats)
        F.smooth_l1_loss(out.float(), target).backward()

    variants = {"nn.GroupNorm": nn.GroupNorm, "fp32 GroupNorm": Fp32GroupNorm, "NCHW GroupNorm": ours}
    return best_seconds({name: partial(run, cls) for name, cls in variants.items()}, reps)


def optimizer_step(reps: int) -> dict[str, float]:
    """The same gradients, one step each (the two optimizers keep separate state)."""
    model = mvlt.create_model("mvlt_tiny", image_size=256, **PAPER_DESIGN)
    for param in model.parameters():
        param.grad = torch.randn_like(param) * 1e-3
    params = list(model.parameters())
    foreach = torch.optim.AdamW(params, lr=1e-4, foreach=True)
    fused = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    return best_seconds({"foreach AdamW": foreach.step, "fused AdamW": fused.step}, reps)


def main() -> None:
    tuning = malloc_tuning()
    if tuning:  # the allocator settings of the ``mvlt`` command (large tensors reused)
        os.environ.update(tuning)
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:]])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine()
    print(f"{info['cpu']} ({info['cpu_capability']}), torch {info['torch']}, {args.threads} thread(s)")
    results: dict[str, dict[str, float]] = {}
    for bf16 in (False, True):
        precision = "bf16" if bf16 else "fp32"
        if "convs" in args.parts:
            results[f"strided_convs_{precision}"] = strided(bf16, args.reps)
        if "attention" in args.parts:
            results[f"attention_{precision}"] = attention_pass(bf16, args.reps)
    if "decoder" in args.parts:
        results["decoder_bf16"] = decoder(args.reps)
    if "optimizer" in args.parts:
        results["optimizer_step"] = optimizer_step(args.reps)
    clock = "CPU" if args.threads == 1 else "wall"
    print(f"forward + backward, {clock} ms (best of the alternating repetitions):")
    for name, seconds in results.items():
        print(f"  {name:22s} " + " | ".join(f"{k} {1e3 * v:7.1f}" for k, v in seconds.items()))
    write_json(args.json, {"machine": info, "threads": args.threads, "seconds": results})


if __name__ == "__main__":
    main()
