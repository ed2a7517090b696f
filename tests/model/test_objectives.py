"""ITC and ITM on mined negatives: the loss, the negative draws, embeddings, late fusion, recipes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mvlt
from mvlt.model.config import PAPER_DESIGN, MVLTConfig
from mvlt.model.objectives import (
    EmbeddingMemory,
    contrastive_loss,
    pair_uniform,
    same_text,
    sample_negatives,
)

from .test_model import make_batch


def test_contrastive_loss_is_clips_symmetric_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    t = torch.tensor(0.1)
    logits = image @ text.t() / t
    expected = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.t(), torch.arange(6))) / 2
    loss = contrastive_loss(image, text, image, text, torch.eye(6, dtype=torch.bool), t)
    torch.testing.assert_close(loss, expected)
    # Aligned pairs score far lower than shuffled ones.
    aligned = contrastive_loss(image, image, image, image, torch.eye(6, dtype=torch.bool), t)
    assert aligned < loss


def test_items_sharing_a_text_are_all_positives() -> None:
    ids = torch.tensor([[101, 5, 102], [101, 6, 102], [101, 5, 102]])
    same = same_text(ids, ids)
    assert same.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    g = torch.Generator().manual_seed(1)
    image = F.normalize(torch.randn(3, 4, generator=g), dim=-1)
    text = F.normalize(torch.randn(3, 4, generator=g), dim=-1)
    t = torch.tensor(0.1)
    targets = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    i2t = -(targets * F.log_softmax(image @ text.t() / t, dim=1)).sum(1).mean()
    t2i = -(targets * F.log_softmax(text @ image.t() / t, dim=1)).sum(1).mean()
    torch.testing.assert_close(contrastive_loss(image, text, image, text, same, t), (i2t + t2i) / 2)


def test_pair_uniform_is_keyed_by_items_not_positions() -> None:
    rows, cols = torch.tensor([3, 7, 11]), torch.tensor([3, 7, 11, 20])
    u = pair_uniform(5, rows, cols)
    assert u.shape == (3, 4) and bool(((u > 0) & (u < 1)).all())
    perm_rows, perm_cols = torch.tensor([2, 0, 1]), torch.tensor([3, 1, 0, 2])
    torch.testing.assert_close(pair_uniform(5, rows[perm_rows], cols[perm_cols]), u[perm_rows][:, perm_cols])
    assert not torch.equal(pair_uniform(6, rows, cols), u)
    many = pair_uniform(0, torch.arange(200), torch.arange(200))
    assert abs(float(many.mean()) - 0.5) < 0.01  # roughly uniform


def test_negatives_follow_the_softmax_and_skip_invalid_columns() -> None:
    n = 400
    keys = torch.arange(n)
    logits = torch.tensor([0.0, 2.0, 1.0, 5.0]).repeat(n, 1)
    valid = torch.tensor([True, True, True, False]).repeat(n, 1)
    picks = sample_negatives(logits, valid, keys, torch.tensor([1000, 1001, 1002, 1003]), seed=1)
    counts = torch.bincount(picks, minlength=4).double() / n
    expected = torch.softmax(torch.tensor([0.0, 2.0, 1.0]), 0).double()
    assert counts[3] == 0  # never an invalid column, however likely
    torch.testing.assert_close(counts[:3], expected, atol=0.07, rtol=0)
    # Not the argmax every time: sampling, as ALBEF does.
    assert 0 < counts[1] < 1


def test_a_row_without_valid_column_falls_back_to_another_item() -> None:
    keys = torch.tensor([0, 1, 2])
    none_valid = torch.zeros(3, 3, dtype=torch.bool)
    picks = sample_negatives(torch.zeros(3, 3), none_valid, keys, keys, seed=0)
    assert all(int(p) != i for i, p in enumerate(picks))


@pytest.fixture(scope="module")
def nano() -> mvlt.MVLT:
    torch.manual_seed(0)
    return mvlt.create_model("mvlt_nano").eval()


def test_embeddings_are_unit_vectors_of_the_unimodal_passes(nano: mvlt.MVLT) -> None:
    batch = make_batch(3, 64, 9)
    with torch.no_grad():
        images = nano.encode_images(batch["images"])
        texts = nano.encode_texts(batch["input_ids"], batch["attention_mask"])
        # A text's embedding does not depend on the batch it is encoded with.
        alone = nano.encode_texts(batch["input_ids"][:1], batch["attention_mask"][:1])
    assert images.shape == texts.shape == (3, nano.config.contrastive_dim)
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(texts.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(alone[0], texts[0], atol=1e-5, rtol=0)


def test_models_without_itc_heads_say_so(tmp_path) -> None:
    paper = mvlt.create_model("mvlt_nano", **PAPER_DESIGN)
    assert paper.itc_head is None
    with pytest.raises(ValueError, match="no ITC heads"):
        paper.encode_images(torch.rand(1, 3, 64, 64))
    # A config saved before the fields existed loads as the paper's design.
    legacy = {k: v for k, v in paper.config.to_dict().items() if k not in PAPER_DESIGN}
    config = MVLTConfig.from_dict(legacy)
    assert (config.match_head, config.contrastive_dim, config.fusion_stage) == ("cls", 0, 1)


def test_late_fusion_reuses_the_unimodal_passes(nano: mvlt.MVLT) -> None:
    """The ITM pairs' joint stages run on the unimodal passes' features up to the fusion stage;
    that must equal running the pairs through the whole encoder."""
    batch = make_batch(2, 64, 7)
    images, ids, mask = batch["images"], batch["input_ids"], batch["attention_mask"]
    fuse = nano.config.fusion_stage - 1
    assert fuse == 3
    with torch.no_grad():
        full = nano.forward_encoder(images, ids, mask)
        vis = nano.forward_encoder(images=images).visual[fuse - 1]
        txt = nano.forward_encoder(input_ids=ids, attention_mask=mask).text[fuse - 1]
        late = nano.forward_stages(vis, txt, mask, start=fuse)
        cls = nano.forward_cls(images, ids, mask)
    torch.testing.assert_close(late.cls, full.cls)
    torch.testing.assert_close(late.visual[-1], full.visual[-1])
    torch.testing.assert_close(cls, full.cls, atol=1e-5, rtol=1e-4)
    # Before the fusion stage the text does not see the image.
    other = nano.forward_encoder(torch.rand_like(images), ids, mask)
    torch.testing.assert_close(other.text[fuse - 1], full.text[fuse - 1])
    assert not torch.allclose(other.text[-1], full.text[-1])


def test_paper_design_fuses_from_stage_one() -> None:
    torch.manual_seed(0)
    paper = mvlt.create_model("mvlt_nano", **PAPER_DESIGN).eval()
    batch = make_batch(2, 64, 7)
    with torch.no_grad():
        a = paper.forward_encoder(batch["images"], batch["input_ids"], batch["attention_mask"])
        b = paper.forward_encoder(
            torch.rand_like(batch["images"]), batch["input_ids"], batch["attention_mask"]
        )
    assert not torch.allclose(a.text[0], b.text[0])


def test_itc_and_mined_itm_losses_train_every_head() -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", vocab_size=3000).train()
    batch = make_batch(4, 64, 8, vocab=3000)
    batch["index"] = torch.arange(4)
    losses = model.forward_loss(batch, mvlt.LossWeights(itc=1.0, mir=0.0, mlm=0.0), itm_negatives="itc")
    assert set(losses) == {"itc", "itm", "total"}
    # 1 positive and 2 negatives per item: a head that knows nothing scores ~ln 3-ish, not ln 2.
    assert 0.3 < float(losses["itm"]) < 1.5 and float(losses["itc"]) > 0
    losses["total"].backward()
    for name in ("itc_head.image_proj.weight", "itc_head.text_proj.weight", "itc_head.temperature",
                 "itm_head.cls_score.weight", "itm_head.log_scale"):  # fmt: skip
        assert model.get_parameter(name).grad is not None, name
    # The decoder and MLM head are not part of these objectives.
    assert model.decoder.parameters().__next__().grad is None


def test_the_seed_decides_the_negatives() -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", vocab_size=3000).eval()
    batch = make_batch(6, 64, 8, vocab=3000, seed=3)
    weights = mvlt.LossWeights(itc=1.0, mir=0.0, mlm=0.0)
    with torch.no_grad():
        a = model.forward_loss(batch, weights, itm_negatives="itc", seed=1)["itm"]
        b = model.forward_loss(batch, weights, itm_negatives="itc", seed=1)["itm"]
        c = [model.forward_loss(batch, weights, itm_negatives="itc", seed=s)["itm"] for s in range(2, 8)]
    assert a == b
    assert any(x != a for x in c)


def test_fused_head_scores_and_match_probability_agree(nano: mvlt.MVLT) -> None:
    batch = make_batch(3, 64, 8)
    with torch.no_grad():
        score = nano.match_score(batch["images"], batch["input_ids"], batch["attention_mask"])
        logits = nano.itm_logits(
            nano.forward_encoder(batch["images"], batch["input_ids"], batch["attention_mask"])
        )
        prob = nano.match_probability(batch["images"], batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(score, logits[:, 1] - logits[:, 0])
    torch.testing.assert_close(prob, torch.sigmoid(score))


def test_recognition_reads_the_itm_pass_of_the_true_pairs() -> None:
    """With ITC-mined ITM and no MIR / MLM, the recognition losses come from the ITM pass's true
    pairs: the same values as a clean joint pass, one whole-encoder pass fewer."""
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", vocab_size=3000, num_categories=3, num_subcategories=4).eval()
    batch = make_batch(4, 64, 8, vocab=3000)
    batch["index"] = torch.arange(4)
    weights = mvlt.LossWeights(itc=1.0, mir=0.0, mlm=0.0, itm=1.0, category=1.0, subcategory=1.0)
    calls = []
    hook = model.text_embed.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        shared = model.forward_loss(batch, weights, itm_negatives="itc")
        clean = model.forward_loss(
            batch, mvlt.LossWeights(itc=0.0, mir=0.0, mlm=0.0, itm=0.0, category=1.0, subcategory=1.0),
            use_masked_images=False,
        )  # fmt: skip
    hook.remove()
    assert calls == [1, 1]  # the text pass of ITC only; the recognition-only call embeds once more
    for name in ("category", "subcategory"):
        torch.testing.assert_close(shared[name], clean[name], atol=1e-5, rtol=1e-4)
    # With MLM on, the joint pass runs anyway and recognition stays there (on its inputs).
    both = model.forward_loss(
        batch, mvlt.LossWeights(itc=1.0, mir=0.0, mlm=1.0, category=1.0), itm_negatives="itc"
    )
    assert {"category", "mlm", "itm"} <= set(both)


ITC_ITM = mvlt.LossWeights(itc=1.0, mir=0.0, mlm=0.0, itm=1.0)


def test_the_memory_keeps_the_newest_rows_and_round_trips() -> None:
    memory = EmbeddingMemory(5, dim=2, text_length=3)
    for start in (0, 3):
        rows = torch.arange(start, start + 3, dtype=torch.float32)
        column = rows[:, None]
        memory.push(column.expand(3, 2), -column.expand(3, 2), column.long().expand(3, 3))
    image, text, ids = memory.negatives(torch.device("cpu"))
    assert len(memory) == 5 and image[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert ids[:, 0].tolist() == [1, 2, 3, 4, 5] and text[:, 0].tolist() == [-1, -2, -3, -4, -5]
    again = EmbeddingMemory(5, dim=2, text_length=3)
    again.load_state_dict(memory.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.negatives(torch.device("cpu")), (image, text, ids)))
    with pytest.raises(ValueError, match="do not fit"):
        EmbeddingMemory(5, dim=4, text_length=3).load_state_dict(memory.state_dict())
    with pytest.raises(ValueError, match="size must be positive"):
        EmbeddingMemory(0, dim=2, text_length=3)


def test_memory_rows_are_negatives_or_with_the_same_text_positives() -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", vocab_size=3000).eval()
    batch = make_batch(4, 64, 8, vocab=3000)
    batch["index"] = torch.arange(4)
    memory = EmbeddingMemory(16, model.config.contrastive_dim, model.config.max_text_len)
    with torch.no_grad():
        plain = model.forward_loss(batch, ITC_ITM, itm_negatives="itc")["itc"]
        first = model.forward_loss(batch, ITC_ITM, itm_negatives="itc", memory=memory)["itc"]
        assert len(memory) == 4 and torch.equal(first, plain)  # empty: the batch alone, then pushed
        # The memory now holds this very batch: each row's copy is a second positive with its own
        # score, so every softmax is over each score twice and the loss rises by exactly ln 2.
        second = model.forward_loss(batch, ITC_ITM, itm_negatives="itc", memory=memory)["itc"]
        assert float(second) == pytest.approx(float(plain) + math.log(2), abs=1e-5)
        # Other products' rows are negatives only: the loss rises, by less than ln 2 here.
        other = make_batch(4, 64, 8, vocab=3000, seed=7)
        fresh = EmbeddingMemory(16, model.config.contrastive_dim, model.config.max_text_len)
        model.forward_loss({**other, "index": torch.arange(4, 8)}, ITC_ITM, itm_negatives="itc", memory=fresh)
        harder = model.forward_loss(batch, ITC_ITM, itm_negatives="itc", memory=fresh)["itc"]
        assert float(plain) < float(harder)
