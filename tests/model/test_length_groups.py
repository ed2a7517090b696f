"""Texts run in groups of similar length (``mvlt.model.length_groups``): the grouped passes give
the ungrouped ones' features, losses and gradients, one implementation checked against the other."""

from __future__ import annotations

import pytest
import torch

import mvlt
from mvlt.model.length_groups import length_groups

LENGTHS = [5, 30, 7, 12, 29, 6, 18, 9, 25, 8, 11, 27, 6, 14, 30, 10]


def ragged_batch(lengths: list[int] = LENGTHS, size: int = 64, vocab: int = 2000, seed: int = 0) -> dict:
    """A batch whose texts are right-padded to the longest, as the collate pads them."""
    g = torch.Generator().manual_seed(seed)
    n, width = len(lengths), max(lengths)
    ids = torch.zeros(n, width, dtype=torch.long)
    mask = torch.zeros(n, width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(1000, vocab, (length,), generator=g)
        ids[row, 0], ids[row, length - 1] = 101, 102
        mask[row, :length] = 1
    images = torch.rand(n, 3, size, size, generator=g)
    return {"images": images, "input_ids": ids, "attention_mask": mask, "index": torch.arange(n)}


def model_with(groups: int, **overrides) -> mvlt.MVLT:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", vocab_size=2000, text_dropout=0.0, **overrides)
    model.set_text_groups(groups)
    return model


def test_groups_cover_every_row_once_and_fit_their_longest_text() -> None:
    mask = ragged_batch()["attention_mask"]
    groups = length_groups(mask, 4)
    assert groups is not None and len(groups) == 4
    rows = torch.cat([r for r, _ in groups])
    assert sorted(rows.tolist()) == list(range(len(LENGTHS)))
    for r, width in groups:
        assert width == max(LENGTHS[i] for i in r.tolist())
    assert [w for _, w in groups] == sorted(w for _, w in groups)  # shortest first
    padded = sum(len(r) * w for r, w in groups)
    assert padded < 0.75 * len(LENGTHS) * max(LENGTHS)


def test_no_groups_where_they_would_not_pay() -> None:
    assert length_groups(torch.ones(16, 20, dtype=torch.long), 4) is None  # equal lengths: no saving
    assert length_groups(ragged_batch(LENGTHS[:6])["attention_mask"], 4) is None  # too few rows
    assert length_groups(ragged_batch()["attention_mask"], 1) is None


@pytest.mark.parametrize("with_images", [False, True])
def test_grouped_features_equal_the_padded_pass(with_images: bool) -> None:
    batch = ragged_batch()
    images = batch["images"] if with_images else None
    mask = batch["attention_mask"]
    with torch.no_grad():
        plain = model_with(1).eval().forward_encoder(images, batch["input_ids"], mask)
        grouped = model_with(4).eval().forward_encoder(images, batch["input_ids"], mask)
    real = mask.bool()
    for a, b in zip(plain.text, grouped.text):
        assert a.shape == b.shape
        torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=1e-4)
    for a, b in zip(plain.visual or [], grouped.visual or []):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_grouped_training_step_equals_the_padded_one() -> None:
    """ITC, ITM on ITC-mined negatives (its joint stage runs grouped too) and their gradients."""
    batch = ragged_batch()
    losses, grads = [], []
    for groups in (1, 4):
        model = model_with(groups).train()
        out = model.forward_loss(
            batch, mvlt.LossWeights(itc=1.0, itm=1.0, mlm=0.0, mir=0.0), itm_negatives="itc"
        )
        out["total"].backward()
        losses.append(torch.stack([out["itc"], out["itm"]]))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-3)


def test_a_model_that_attends_to_padding_is_never_grouped() -> None:
    batch = ragged_batch()
    with torch.no_grad():
        a = model_with(1, mask_padding=False).eval().encode_texts(batch["input_ids"], batch["attention_mask"])
        b = model_with(4, mask_padding=False).eval().encode_texts(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(a, b)


class _Texts(torch.nn.Module):
    def __init__(self, model: mvlt.MVLT) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_texts(input_ids, attention_mask)


@pytest.mark.parametrize("how", ["trace", "export"])
def test_tracers_and_exporters_see_the_padded_pass(how: str) -> None:
    """A traced or exported graph must not bake in one batch's groups: it is then run on texts of
    other lengths (the ONNX export of ``mvlt.search.export`` goes through ``torch.export``)."""
    model = model_with(4).eval()
    batch = ragged_batch()
    args = (batch["input_ids"], batch["attention_mask"])
    if how == "trace":
        graph = torch.jit.trace(_Texts(model), args, check_trace=False)
    else:
        graph = torch.export.export(_Texts(model), args).module()
    other = ragged_batch([30 - (i % 3) for i in range(16)], seed=1)  # other lengths, same width
    with torch.no_grad():
        expected = model.encode_texts(other["input_ids"], other["attention_mask"])
        got = graph(other["input_ids"], other["attention_mask"])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="text groups"):
        model.set_text_groups(0)
