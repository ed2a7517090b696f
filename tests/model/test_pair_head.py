"""The pair head (``MVLTConfig.pair_head``): a second embedding space that the ``kd_image`` /
``kd_text`` losses teach instead of ITC, blended with ITC in every retrieval embedding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvlt.model import MVLT, LossWeights, MVLTConfig, create_model


def _model(**overrides: object) -> MVLT:
    torch.manual_seed(0)
    return create_model(
        "mvlt_nano", image_size=64, vocab_size=50, contrastive_dim=16, pair_head=True, **overrides
    ).eval()


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "images": torch.rand(n, 3, 64, 64, generator=g),
        "input_ids": torch.randint(5, 50, (n, 7), generator=g),
        "attention_mask": torch.ones(n, 7, dtype=torch.long),
        "index": torch.arange(n),
    }


def test_retrieval_embeddings_blend_the_two_cosines_by_pair_weight():
    model, batch = _model(pair_weight=0.3), _batch()
    with torch.no_grad():
        images = model.encode_images(batch["images"])
        texts = model.encode_texts(batch["input_ids"], batch["attention_mask"])
        pooled = model.image_features(batch["images"])
        cls = model.text_features(batch["input_ids"], batch["attention_mask"])
        itc = model.itc_head.embed_text(cls) @ model.itc_head.embed_image(pooled).t()
        pair = model.pair_head.embed_text(cls) @ model.pair_head.embed_image(pooled).t()
    assert images.shape == texts.shape == (4, model.embedding_dim) and model.embedding_dim == 32
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(texts @ images.t(), 0.7 * itc + 0.3 * pair)
    assert not torch.allclose(itc, pair, atol=1e-3)  # two different spaces, so the blend can fail


@pytest.mark.parametrize("weight, which", [(0.0, "itc"), (1.0, "pair")])
def test_pair_weight_zero_or_one_scores_one_space_alone(weight, which):
    model, batch = _model(pair_weight=weight), _batch()
    with torch.no_grad():
        similarity = (
            model.encode_texts(batch["input_ids"], batch["attention_mask"])
            @ model.encode_images(batch["images"]).t()
        )
        head = model.itc_head if which == "itc" else model.pair_head
        alone = head.embed_text(model.text_features(batch["input_ids"], batch["attention_mask"])) @ (
            head.embed_image(model.image_features(batch["images"])).t()
        )
    torch.testing.assert_close(similarity, alone)


def test_kd_terms_teach_the_pair_head_and_leave_the_itc_projections_alone():
    model, batch = _model(), _batch()
    model.train()
    targets = {
        "target_image_emb": F.normalize(torch.randn(4, 16), dim=-1),
        "target_text_emb": F.normalize(torch.randn(4, 16), dim=-1),
    }
    weights = LossWeights(itc=0, mir=0, itm=0, mlm=0, kd_image=1, kd_text=1)
    losses = model.forward_loss({**batch, **targets}, weights)
    with torch.no_grad():
        pooled = model.image_features(batch["images"])
    expected = (1 - (model.pair_head.embed_image(pooled) * targets["target_image_emb"]).sum(-1)).mean()
    torch.testing.assert_close(losses["kd_image"], expected, atol=1e-5, rtol=1e-4)
    losses["total"].backward()
    assert model.pair_head.image_proj.weight.grad.abs().sum() > 0
    assert model.pair_head.text_proj.weight.grad.abs().sum() > 0
    assert model.itc_head.image_proj.weight.grad is None and model.itc_head.text_proj.weight.grad is None
    assert model.stages[0].patch_embed.proj.weight.grad.abs().sum() > 0  # and the encoder under both


def test_pair_head_round_trips_and_older_configs_load_without_one(tmp_path):
    model, batch = _model(pair_weight=0.25), _batch()
    model.save_pretrained(tmp_path / "m")
    loaded = MVLT.from_pretrained(tmp_path / "m").eval()
    assert loaded.pair_head is not None and loaded.config.pair_weight == 0.25
    with torch.no_grad():
        images = batch["images"]
        torch.testing.assert_close(loaded.encode_images(images), model.encode_images(images))
    older = {k: v for k, v in model.config.to_dict().items() if not k.startswith("pair_")}
    plain = MVLTConfig.from_dict(older)
    assert plain.pair_head is False and MVLT(plain).pair_head is None


def test_pair_head_settings_are_checked():
    with pytest.raises(ValueError, match="pair_head needs the ITC heads"):
        MVLTConfig(contrastive_dim=0, pair_head=True)
    with pytest.raises(ValueError, match=r"pair_weight must be in \[0, 1\]"):
        MVLTConfig(pair_weight=1.5)
