"""The kernels chosen for speed compute what they replace, and bf16 training follows fp32.

Small shapes only: on a CPU without native bf16 every bf16 matmul is emulated (~100x slower).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mvlt
from mvlt.model import layers
from mvlt.model.decoders import GroupNorm
from mvlt.model.layers import attention, patch_tokens

from .test_model import make_batch


@pytest.mark.parametrize(("cin", "cout", "k", "size"), [(3, 8, 4, 16), (8, 8, 2, 8), (6, 4, 4, 10)])
@pytest.mark.parametrize("layout", ["nchw", "tokens"])
def test_patch_tokens_is_the_strided_convolution(cin: int, cout: int, k: int, size: int, layout: str) -> None:
    """Same values and gradients as ``conv(x).flatten(2).transpose(1, 2)``, on NCHW maps and on
    channels-last views of tokens, including a size the kernel does not divide (10 by 4)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, k, stride=k)
    base = torch.randn(2, cin, size, size)
    if layout == "tokens":  # as the encoder hands it: B x (h*w) x C tokens seen as a map
        base = base.flatten(2).transpose(1, 2).contiguous().unflatten(1, (size, size)).permute(0, 3, 1, 2)
    grads = []
    for use_matmul in (False, True):
        x = base.detach().clone().requires_grad_(True)
        conv.zero_grad()
        if use_matmul:
            out, hw = patch_tokens(x, conv)
        else:
            ref = conv(x)
            out, hw = ref.flatten(2).transpose(1, 2), (ref.shape[2], ref.shape[3])
        assert hw == (size // k, size // k) and out.shape == (2, hw[0] * hw[1], cout)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()))
    for reference, got in zip(*grads):
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native", ["avx512_bf16", None])
def test_bf16_attention_on_cpu_matches_fp32_sdpa(native: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The written-out bf16 path (native bf16) and SDPA (emulated bf16) agree with fp32 SDPA to
    bf16 rounding; fp32 is SDPA itself."""
    monkeypatch.setattr(layers, "cpu_has_native_bf16", lambda: native)
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 40, 16), torch.randn(2, 3, 12, 16), torch.randn(2, 3, 12, 16)
    mask = torch.ones(2, 1, 1, 12, dtype=torch.bool)
    mask[1, ..., 8:] = False  # padded text keys of the second item
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(attention(q, k, v, mask), reference)
    inputs = [t.bfloat16().requires_grad_(True) for t in (q, k, v)]
    out = attention(*inputs, mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.03)
    out.float().sum().backward()
    exact = [t.clone().requires_grad_(True) for t in (q, k, v)]
    F.scaled_dot_product_attention(*exact, attn_mask=mask).sum().backward()
    for got, want in zip(inputs, exact):
        torch.testing.assert_close(got.grad.float(), want.grad, rtol=0.05, atol=0.05)
    assert inputs[1].grad[1, ..., 8:, :].abs().max() == 0  # masked keys get no gradient
    unmasked = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), None)  # image-only passes
    reference = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(unmasked.float(), reference, rtol=0.05, atol=0.03)
    low = [t.bfloat16() for t in (q, k, v)]
    sdpa = F.scaled_dot_product_attention(*low, attn_mask=mask)
    assert torch.equal(attention(*low, mask), sdpa) == (native is None)
    if native:  # the bias form computes exactly the two-pass form it replaced (scale 1/4: exact)
        two_pass = ((low[0] @ low[1].transpose(-2, -1)) * 16**-0.5).masked_fill(~mask, float("-inf"))
        assert torch.equal(attention(*low, mask), two_pass.softmax(-1) @ low[2])


def test_decoder_group_norm_keeps_bf16_channels_last_and_the_values() -> None:
    torch.manual_seed(0)
    norm = GroupNorm(2, 8)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), torch.nn.GroupNorm(2, 8)(x), rtol=0.02, atol=0.02)
    torch.testing.assert_close(norm(x), F.group_norm(x, 2, norm.weight, norm.bias, norm.eps))


def test_bf16_training_follows_fp32() -> None:
    """A few AdamW steps of a nano model on one batch: the bf16-autocast loss curve stays close
    to fp32's (every objective: MIR, ITM, MLM and ITC; images of 32 px)."""
    batch = make_batch(4, 32, 12, vocab=2000)
    curves = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = mvlt.create_model("mvlt_nano", image_size=32, vocab_size=2000)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        curve = []
        for _ in range(6):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model.forward_loss(batch, mvlt.LossWeights(itc=1.0))["total"]
            loss.backward()
            optimizer.step()
            curve.append(float(loss.detach()))
        curves[precision] = torch.tensor(curve)
    assert curves["fp32"][-1] < 0.9 * curves["fp32"][0]  # it learns
    torch.testing.assert_close(curves["bf16"], curves["fp32"], rtol=0.02, atol=0.0)
