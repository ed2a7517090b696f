"""The MVLT model: shapes, variants, gradients, padding, the ITM-only path."""

from __future__ import annotations

import pytest
import torch

import mvlt
from mvlt.model.mvlt import IGNORE_INDEX


def make_batch(batch: int = 2, size: int = 64, length: int = 10, vocab: int = 30522, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    images = torch.rand(batch, 3, size, size, generator=g)
    mlm = torch.full_like(ids, IGNORE_INDEX)
    mlm[:, 2] = ids[:, 2]
    return {
        "images": images,
        "masked_images": images.masked_fill(torch.rand(batch, 1, size, size, generator=g) < 0.5, 1e-6),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mlm_labels": mlm,
        "itm_labels": torch.arange(batch) % 2,
        "category_labels": torch.arange(batch) % 3,
        "subcategory_labels": torch.arange(batch) % 4,
    }


@pytest.fixture(scope="module")
def nano() -> mvlt.MVLT:
    torch.manual_seed(0)
    return mvlt.create_model("mvlt_nano", num_categories=3, num_subcategories=4).eval()


@pytest.mark.parametrize("size", [64, 128, 256])
def test_encoder_and_decoder_shapes(nano: mvlt.MVLT, size: int) -> None:
    batch = make_batch(2, size, 9)
    with torch.no_grad():
        out = nano.forward_encoder(batch["images"], batch["input_ids"], batch["attention_mask"])
        recon = nano.forward_decoder(out.visual)
    dims = nano.config.embed_dims
    assert [tuple(t.shape) for t in out.text] == [(2, 9, d) for d in dims]
    assert [tuple(v.shape) for v in out.visual] == [
        (2, d, size // r, size // r) for d, r in zip(dims, (4, 8, 16, 32))
    ]
    assert recon.shape == (2, 3, size, size)


def test_unimodal_inputs(nano: mvlt.MVLT) -> None:
    batch = make_batch(2, 64, 7)
    with torch.no_grad():
        text_only = nano.forward_encoder(None, batch["input_ids"], batch["attention_mask"])
        image_only = nano.forward_encoder(batch["images"], None)
    assert text_only.visual is None and len(text_only.text) == 4
    assert image_only.text is None and len(image_only.visual) == 4
    assert text_only.text[-1].shape == (2, 7, nano.config.embed_dims[-1])
    with pytest.raises(ValueError, match="needs images, input_ids or both"):
        nano.forward_encoder(None, None)


def test_image_size_must_be_divisible_by_32(nano: mvlt.MVLT) -> None:
    with pytest.raises(ValueError, match="not divisible by 32"):
        nano.forward_encoder(torch.rand(1, 3, 80, 80), None)


@pytest.mark.parametrize("name", mvlt.list_models())
def test_every_variant_runs_forward_and_backward(name: str) -> None:
    torch.manual_seed(0)
    model = mvlt.create_model(name, image_size=64, vocab_size=2000)
    losses = model.forward_loss(make_batch(1, 64, 6, vocab=2000))
    assert set(losses) == {"mir", "itm", "mlm", "total"}
    losses["total"].backward()
    assert torch.isfinite(losses["total"])
    assert model.stages[0].patch_embed.proj.weight.grad is not None


def test_total_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", num_categories=3, num_subcategories=4, vocab_size=3000)
    model.train()
    losses = model.forward_loss(make_batch(4, 64, 8, vocab=3000), mvlt.LossWeights(itc=1.0))
    assert set(losses) == {"itc", "mir", "itm", "mlm", "category", "subcategory", "total"}
    losses["total"].backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_total_uses_the_papers_weights(nano: mvlt.MVLT) -> None:
    with torch.no_grad():
        losses = nano.forward_loss(make_batch())
    expected = 10 * losses["mir"] + losses["itm"] + losses["mlm"] + losses["category"] + losses["subcategory"]
    torch.testing.assert_close(losses["total"], expected)


def test_objectives_can_be_switched_off(nano: mvlt.MVLT) -> None:
    with torch.no_grad():
        only_itm = nano.forward_loss(make_batch(), mvlt.LossWeights(mir=0, mlm=0, category=0, subcategory=0))
        itm_mir = nano.forward_loss(make_batch(), mvlt.LossWeights(mlm=0, category=0, subcategory=0))
    assert set(only_itm) == {"itm", "total"}
    torch.testing.assert_close(only_itm["total"], only_itm["itm"])
    assert set(itm_mir) == {"itm", "mir", "total"}


def test_clean_or_masked_encoder_input(nano: mvlt.MVLT) -> None:
    batch = make_batch()
    with torch.no_grad():
        masked = nano.forward_loss(batch, use_masked_images=True)
        clean = nano.forward_loss(batch, use_masked_images=False)
    assert not torch.allclose(masked["mir"], clean["mir"])
    assert not torch.allclose(masked["mlm"], clean["mlm"])


def test_recognition_loss_ignores_unknown_labels(nano: mvlt.MVLT) -> None:
    batch = make_batch()
    batch["category_labels"] = torch.full((2,), IGNORE_INDEX)
    with torch.no_grad():
        losses = nano.forward_loss(batch)
    assert losses["category"].item() == 0.0 and torch.isfinite(losses["total"])


def _outputs(model: mvlt.MVLT, ids: torch.Tensor, mask: torch.Tensor, images: torch.Tensor) -> list:
    """Every output at the 8 real text positions, flattened into one list of tensors."""
    with torch.no_grad():
        out = model.forward_encoder(images, ids, mask)
        text = [t[:, :8] for t in out.text]
        heads = [model.itm_logits(out), model.mlm_logits(text[-1]), model.forward_decoder(out.visual)]
        return [*text, *out.visual, *heads]


@pytest.mark.parametrize("mask_padding", [True, False])
def test_appending_padding_changes_nothing_when_masked(mask_padding: bool) -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", mask_padding=mask_padding).eval()
    batch = make_batch(2, 64, 8)
    ids, images = batch["input_ids"], batch["images"]
    padded = torch.cat((ids, torch.zeros(2, 5, dtype=ids.dtype)), dim=1)
    mask = torch.cat((torch.ones(2, 8), torch.zeros(2, 5)), dim=1).long()
    short = _outputs(model, ids, torch.ones(2, 8, dtype=torch.long), images)
    long = _outputs(model, padded, mask, images)
    same = all(torch.allclose(a, b, atol=1e-5) for a, b in zip(short, long))
    assert same is mask_padding  # without the mask, [PAD] tokens leak into every output


def test_match_probability_is_the_itm_path_only(nano: mvlt.MVLT) -> None:
    batch = make_batch(3, 64, 9)
    args = (batch["images"], batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        out = nano.forward_encoder(*args)
        full = nano.itm_logits(out).softmax(-1)[:, 1]
        nano.forward_decoder(out.visual), nano.mlm_logits(out.text[-1])

        def forbid(*_):
            raise AssertionError("match_probability ran a head it does not need")

        hooks = [m.register_forward_hook(forbid) for m in (nano.decoder, nano.mlm_head, nano.category_head)]
        try:
            prob = nano.match_probability(*args)
        finally:
            for h in hooks:
                h.remove()
    assert prob.shape == (3,)
    torch.testing.assert_close(prob, full)
    with torch.no_grad():
        logits = nano.itm_logits(out)
        torch.testing.assert_close(nano.match_score(*args), logits[:, 1] - logits[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask_padding", [True, False])
@pytest.mark.parametrize("with_images", [True, False])
def test_cls_only_path_equals_the_full_encoder(mask_padding: bool, with_images: bool) -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", mask_padding=mask_padding).eval()
    batch = make_batch(3, 64, 9)
    batch["attention_mask"][1, 6:] = 0
    images = batch["images"] if with_images else None
    with torch.no_grad():
        full = model.forward_encoder(images, batch["input_ids"], batch["attention_mask"]).cls
        cls = model.forward_cls(images, batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(cls, full, rtol=1e-5, atol=1e-5)


def test_classify_returns_both_heads(nano: mvlt.MVLT) -> None:
    batch = make_batch(2, 64, 6)
    with torch.no_grad():
        logits = nano.classify(batch["images"], batch["input_ids"], batch["attention_mask"])
    assert logits.category.shape == (2, 3) and logits.subcategory.shape == (2, 4)
    with pytest.raises(ValueError, match="no recognition heads"):
        mvlt.create_model("mvlt_nano").classify(batch["images"], batch["input_ids"])


def test_gradient_checkpointing_matches_plain_backward() -> None:
    batch = make_batch(2, 64, 8, vocab=2000)
    grads = []
    for enabled in (False, True):
        torch.manual_seed(0)
        model = mvlt.create_model("mvlt_nano", vocab_size=2000, text_dropout=0.0, grad_checkpointing=enabled)
        model.forward_loss(batch, mvlt.LossWeights(itc=1.0))["total"].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_released_parameter_count() -> None:
    model = mvlt.create_model("mvlt_tiny", compat="official", vocab_size=30522)
    assert model.num_parameters() == 40_025_089
    assert model.config.decoder == "aggregation" and model.config.mask_padding is False


def test_unknown_variant_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="mvlt_tiny"):
        mvlt.create_model("mvlt_huge")


def test_no_weight_decay_names_biases_norms_and_positions(nano: mvlt.MVLT) -> None:
    names = nano.no_weight_decay()
    assert "stages.0.pos_embed" in names and "stages.0.text_pos_embed" in names
    assert "text_embed.position_embeddings.weight" in names and "stages.0.blocks.0.norm1.weight" in names
    assert "stages.0.blocks.0.attn.q.weight" not in names


def test_pixels_are_standardised_inside_the_model(nano: mvlt.MVLT) -> None:
    """Default: ImageNet mean/std applied in the encoder (not stored with the weights); the same
    weights with raw-pixel settings on pre-standardised images give the same features."""
    from mvlt.model.config import RAW_PIXELS

    assert not any("pixel" in k for k in nano.state_dict())
    raw = mvlt.MVLT(nano.config.replace(**RAW_PIXELS)).eval()
    raw.load_state_dict(nano.state_dict())
    nano.eval()
    images = torch.rand(2, 3, 64, 64)
    mean, std = torch.tensor(nano.config.pixel_mean), torch.tensor(nano.config.pixel_std)
    standardised = (images - mean[:, None, None]) / std[:, None, None]
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        expected = raw.forward_encoder(standardised, ids).visual[-1]
        torch.testing.assert_close(nano.forward_encoder(images, ids).visual[-1], expected)
        torch.testing.assert_close(nano.forward_cls(images, ids), raw.forward_cls(standardised, ids))
        assert not torch.allclose(raw.forward_encoder(images, ids).visual[-1], expected)


def test_raw_pixels_for_released_and_older_checkpoints() -> None:
    from mvlt.model.config import RAW_PIXELS, MVLTConfig

    assert mvlt.create_model("mvlt_nano").config.pixel_mean == (0.485, 0.456, 0.406)
    official = mvlt.create_model("mvlt_nano", compat="official").config
    assert (official.pixel_mean, official.pixel_std) == (RAW_PIXELS["pixel_mean"], RAW_PIXELS["pixel_std"])
    saved = MVLTConfig().to_dict()
    del saved["pixel_mean"], saved["pixel_std"]  # a config.json written before the fields existed
    assert MVLTConfig.from_dict(saved).pixel_std == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="pixel_mean"):
        MVLTConfig(pixel_std=(0.2, 0.0, 0.2))


@pytest.mark.parametrize("match_head", ["fused", "cls"])
@pytest.mark.parametrize("fusion_stage", [1, 2, 4])
def test_staged_match_score_equals_the_whole_pass(fusion_stage: int, match_head: str) -> None:
    """Unimodal features of each item, computed alone and unpadded, then the joint stages: the
    scores of ``match_score`` on the padded batch (what the staged retrieval scorer relies on)."""
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", fusion_stage=fusion_stage, match_head=match_head).eval()
    batch = make_batch(3, 64, 9)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = [9, 5, 7]
    for row, n in enumerate(lengths):
        ids[row, n - 1], ids[row, n:], mask[row, n:] = 102, 0, 0
    with torch.no_grad():
        whole = model.match_score(batch["images"], ids, mask)
        visual, _ = model.unimodal_features(images=batch["images"])
        alone = [  # one text at a time, no padding at all
            model.unimodal_features(input_ids=ids[row : row + 1, :n], attention_mask=mask[row : row + 1, :n])[
                1
            ]
            for row, n in enumerate(lengths)
        ]
        text = torch.zeros(3, 9, alone[0].shape[-1])
        for row, (n, tokens) in enumerate(zip(lengths, alone)):
            text[row, :n] = tokens[0]
        staged = model.match_score_joint(visual, text, mask)
    assert whole.shape == staged.shape == (3,)
    torch.testing.assert_close(staged, whole, rtol=1e-4, atol=1e-4)


def test_staged_scoring_refuses_what_it_cannot_pair(nano: mvlt.MVLT) -> None:
    with pytest.raises(ValueError, match="needs images, input_ids or both"):
        nano.unimodal_features()
    batch = make_batch(3, 64, 9)
    with torch.no_grad():
        visual, _ = nano.unimodal_features(images=batch["images"])
        _, text = nano.unimodal_features(input_ids=batch["input_ids"][:2])
        with pytest.raises(ValueError, match="got 3 visual and 2 text rows"):
            nano.match_score_joint(visual, text)


def test_recognition_heads_can_read_the_itc_embeddings_beside_the_cls() -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", num_categories=3, num_subcategories=4, recognition_reads_itc=True)
    model.eval()
    dim = model.config.contrastive_dim
    assert model.subcategory_head.fc.in_features == model.config.word_embed_dim + 2 * dim
    batch = make_batch(2, 64, 6)
    images, ids, mask = batch["images"], batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        itc = torch.cat((model.encode_images(images), model.encode_texts(ids, mask)), 1) * dim**0.5
        expected = model.subcategory_head(model.forward_cls(images, ids, mask), itc)
        torch.testing.assert_close(model.classify(images, ids, mask).subcategory, expected)
        model.itc_head.image_proj.weight.mul_(-1)  # another ITC space, the same [CLS]: other logits
        assert not torch.allclose(model.classify(images, ids, mask).subcategory, expected)
    with pytest.raises(ValueError, match=f"reads {2 * dim} extra features beside the \\[CLS\\], got None"):
        model.subcategory_head(model.forward_cls(images, ids, mask))
    with pytest.raises(ValueError, match="recognition_reads_itc needs the ITC heads"):
        mvlt.create_model("mvlt_nano", contrastive_dim=0, recognition_reads_itc=True)


@pytest.mark.parametrize("weights", [{"itc": 1.0, "itm": 1.0, "mir": 0.0, "mlm": 0.0}, {"mlm": 1.0}])
def test_recognition_reading_itc_learns_without_pulling_on_the_itc_space(weights: dict) -> None:
    # Both paths that train the heads: the ITM pass of ITC-mined negatives, and the joint pass.
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", num_categories=3, num_subcategories=4, recognition_reads_itc=True)
    losses = model.forward_loss(make_batch(), mvlt.LossWeights(**weights, category=0.0, subcategory=1.0))
    losses["subcategory"].backward()
    assert model.subcategory_head.fc.weight.grad[:, -1].abs().sum() > 0  # it reads the ITC features
    assert model.itc_head.image_proj.weight.grad is None and model.itc_head.text_proj.weight.grad is None
    assert model.stages[-1].blocks[0].attn.q.weight.grad.abs().sum() > 0  # the [CLS] path still learns
