"""Learning-rate schedule, AdamW parameter groups and the precision choice."""

from __future__ import annotations

import itertools

import pytest
import torch

import mvlt
from mvlt.train import WarmupCosine, lr_scheduler, resolve_precision
from mvlt.train.optim import build_optimizer, param_groups
from mvlt.train.schedule import warmup_steps


def test_warmup_then_cosine_to_the_floor():
    s = WarmupCosine(peak=1e-3, total=100, warmup=10, floor=1e-5)
    assert [s(i) for i in range(3)] == pytest.approx([1e-4, 2e-4, 3e-4])
    assert s(9) == pytest.approx(1e-3) and s(10) == pytest.approx(1e-3)
    decay = [s(i) for i in range(10, 100)]
    assert all(a >= b for a, b in itertools.pairwise(decay))  # monotone after warm-up
    assert s(99) == pytest.approx(1e-5) and s(500) == pytest.approx(1e-5)
    assert s(55) == pytest.approx((1e-3 + 1e-5) / 2, rel=0.05)  # half-way is the midpoint
    assert WarmupCosine(peak=1.0, total=1)(0) == 1.0
    with pytest.raises(ValueError, match="warmup"):
        WarmupCosine(peak=1.0, total=5, warmup=6)


def test_warmup_length():
    assert warmup_steps(300, None, 5 / 150) == 10  # released: 5 of 150 epochs
    assert warmup_steps(300, 7, 0.5) == 7
    assert warmup_steps(5, 50, 0.0) == 5


def test_lambda_lr_wrapper_follows_the_function():
    schedule = WarmupCosine(peak=0.5, total=20, warmup=4, floor=0.01)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)
    sched = lr_scheduler(opt, schedule)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([schedule(i) for i in range(20)])


def test_no_weight_decay_on_biases_norms_and_position_embeddings():
    model = mvlt.create_model("mvlt_nano", vocab_size=50, image_size=64)
    model.decoder.requires_grad_(False)
    groups = {g["group"]: g for g in param_groups(model, 0.01)}
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    decay = {names[id(p)] for p in groups["decay"]["params"]}
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.01
    assert "stages.0.pos_embed" in no_decay and "stages.0.text_pos_embed" in no_decay
    assert "text_embed.position_embeddings.weight" in no_decay
    assert all(n.endswith("bias") or "norm" in n or "pos" in n or n.startswith("stages") or "embed" in n
               or n.endswith(("temperature", "log_scale")) for n in no_decay)  # fmt: skip
    assert "stages.0.blocks.0.attn.q.weight" in decay and "text_embed.word_embeddings.weight" in decay
    assert not any(n.startswith("decoder.") for n in decay | no_decay)  # frozen: left out
    opt = build_optimizer(model, 1e-3, 0.01)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)


def test_precision_choice():
    cpu = torch.device("cpu")
    auto = resolve_precision("auto", cpu)  # nothing to time: fp32 whatever the CPU (never the flag alone)
    assert auto.name == "fp32" and auto.reason.startswith("auto")
    assert resolve_precision("bf16", cpu).dtype == torch.bfloat16
    assert resolve_precision("fp32", cpu).dtype is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", cpu)
