"""The teachers (``--teachers``): sources and config, the kd losses, the teacher pair, the feature
cache, and a training run that uses the real installed teachers.

Tests marked by :func:`teacher_packages` need the optional extra (``make teachers``); they skip
without it, and fail under ``CI=true``, where ``.ci/run`` installs it.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F

from mvlt.data import bert_tokenizer
from mvlt.model import LossWeights, create_model
from mvlt.model.objectives import contrastive_loss, embedding_distillation, soft_contrastive_loss
from mvlt.train import ConfigError, TrainConfig, train
from mvlt.train.schedule import annealed
from mvlt.train.teachers import features as features_module
from mvlt.train.teachers.distill import TeacherTargets
from mvlt.train.teachers.dual import DualEncoder, fit_dual_encoder
from mvlt.train.teachers.models import PACKAGES, TeacherUnavailable, require_teachers
from mvlt.train.teachers.sources import parse_sources

from .helpers import tiny_config


def teacher_packages() -> None:
    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        message = f"teacher packages not installed ({', '.join(missing)}): run `make teachers`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


# --------------------------------------------------------------------------- sources and config
def test_sources_parse_in_canonical_order_and_refuse_unknown_names():
    assert parse_sources("all") == ["text-init", "text", "image", "cross"]
    assert parse_sources("cross, image") == ["image", "cross"]
    assert parse_sources(None) == [] and parse_sources("") == []
    with pytest.raises(ValueError, match="unknown teacher source"):
        parse_sources("image,resnet")


def test_teachers_switch_their_loss_terms_on_and_weights_still_win():
    weights = TrainConfig(teachers="image,cross").resolved_loss_weights()
    assert (weights["kd_image"], weights["kd_text"], weights["kd_cross"]) == (1.0, 0.0, 1.0)
    weights = TrainConfig(teachers=["all"], loss_weights={"kd_text": 0.5}).resolved_loss_weights()
    assert weights["kd_text"] == 0.5 and weights["kd_image"] == 1.0
    assert TrainConfig(teachers=["text-init"]).resolved_loss_weights()["kd_text"] == 0.0
    with pytest.raises(ConfigError, match="teachers"):
        TrainConfig(teachers="resnet").validate()
    with pytest.raises(ConfigError, match="paper's recipe has no ITC"):
        TrainConfig(recipe="paper", teachers="image").validate()
    # A source whose loss the objectives switch off would teach nothing: refused, naming the loss.
    with pytest.raises(ConfigError, match=r"text train\(s\) kd_text, which objectives"):
        TrainConfig(teachers="text-init,text", objectives=["itc", "itm"]).validate()
    TrainConfig(teachers="text-init,text", objectives=["itc", "itm", "kd_text"]).validate()
    TrainConfig(teachers="text-init", objectives=["itc", "itm"]).validate()


def test_missing_teacher_packages_are_named_with_the_way_to_install_them(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == PACKAGES[2] else real(name))
    with pytest.raises(TeacherUnavailable, match=f"{PACKAGES[2]} not installed.*make teachers"):
        require_teachers()
    assert issubclass(TeacherUnavailable, ValueError)  # an error line and exit 1, not a traceback


# ------------------------------------------------------------------------------------ losses
def test_embedding_distillation_is_one_minus_the_cosine():
    a = F.normalize(torch.randn(5, 8), dim=-1)
    b = F.normalize(torch.randn(5, 8), dim=-1)
    assert torch.allclose(embedding_distillation(a, b), (1 - (a * b).sum(-1)).mean())
    assert float(embedding_distillation(a, a)) == pytest.approx(0.0, abs=1e-6)


def test_soft_targets_of_a_sharp_teacher_are_the_hard_itc_targets():
    image, text = F.normalize(torch.randn(6, 16), dim=-1), F.normalize(torch.randn(6, 16), dim=-1)
    teacher = torch.eye(6, 16)  # orthogonal rows: at a small temperature its softmax is the identity
    temperature = torch.tensor(0.1)
    soft = soft_contrastive_loss(
        image, text, image, text, temperature, teacher, teacher, teacher, teacher, 1e-3
    )
    hard = contrastive_loss(image, text, image, text, torch.eye(6, dtype=torch.bool), temperature)
    assert torch.allclose(soft, hard, atol=1e-5)


def test_model_computes_the_kd_terms_from_targets_in_the_batch_and_names_missing_ones():
    torch.manual_seed(0)
    model = create_model("mvlt_nano", image_size=64, vocab_size=50)
    batch = {
        "images": torch.rand(4, 3, 64, 64),
        "input_ids": torch.randint(5, 50, (4, 7)),
        "attention_mask": torch.ones(4, 7, dtype=torch.long),
    }
    weights = LossWeights(itc=0, mir=0, itm=0, mlm=0, kd_image=1, kd_text=1, kd_cross=1)
    with pytest.raises(ValueError, match="target_image_emb"):
        model.forward_loss(batch, weights)
    dim = model.config.contrastive_dim
    targets = TeacherTargets(
        F.normalize(torch.randn(4, dim), dim=-1), F.normalize(torch.randn(4, dim), dim=-1), 0.05
    )
    losses = model.forward_loss(targets.attach({**batch, "index": torch.arange(4)}), weights)
    assert set(losses) == {"kd_image", "kd_text", "kd_cross", "total"}
    with torch.no_grad():
        expected = embedding_distillation(model.encode_images(batch["images"]), targets.image)
    assert torch.allclose(losses["kd_image"], expected, atol=1e-5)
    losses["total"].backward()  # the terms train the encoder
    assert model.stages[0].patch_embed.proj.weight.grad.abs().sum() > 0
    wrong = TeacherTargets(targets.image[:, :8], targets.text[:, :8], 0.05)
    with pytest.raises(ValueError, match="do not match the model's ITC embeddings"):
        model.forward_loss(wrong.attach({**batch, "index": torch.arange(4)}), weights)


def test_the_encoder_mimics_the_teachers_own_features_through_a_training_only_projection():
    torch.manual_seed(0)
    batch = {
        "images": torch.rand(4, 3, 64, 64),
        "input_ids": torch.randint(5, 50, (4, 7)),
        "attention_mask": torch.ones(4, 7, dtype=torch.long),
        "index": torch.arange(4),
    }
    weights = LossWeights(itc=0, mir=0, itm=0, mlm=0, kd_image_raw=1, kd_text_raw=1)
    plain = create_model("mvlt_nano", image_size=64, vocab_size=50)
    with pytest.raises(ValueError, match="mimic_dims"):  # no projection to mimic through
        plain.forward_loss(batch, weights)
    torch.manual_seed(0)
    model = create_model("mvlt_nano", image_size=64, vocab_size=50, mimic_dims=(12, 6))
    unit = lambda *shape: F.normalize(torch.randn(*shape), dim=-1)  # noqa: E731
    targets = TeacherTargets(image_raw=unit(4, 12), text_raw=unit(4, 6))
    with pytest.raises(ValueError, match="target_image_raw"):
        model.forward_loss(batch, weights)
    losses = model.forward_loss(targets.attach(batch), weights)
    assert set(losses) == {"kd_image_raw", "kd_text_raw", "total"}
    with torch.no_grad():
        hint = model.mimic_head.image_proj(model.image_features(batch["images"]))
        expected = 1 - F.cosine_similarity(hint, targets.image_raw).mean()
    assert torch.allclose(losses["kd_image_raw"], expected, atol=1e-5)
    assert 0 <= losses["kd_text_raw"] <= 2
    loose = TeacherTargets(image_raw=3 * targets.image_raw, text_raw=targets.text_raw)
    with pytest.raises(ValueError, match="unit vectors"):
        model.forward_loss(loose.attach(batch), weights)
    losses["total"].backward()  # the terms train the encoder and the projections
    assert model.stages[0].patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.mimic_head.text_proj.weight.grad.abs().sum() > 0
    with torch.no_grad():  # inference never reads the projections: the same weights embed the same
        assert torch.equal(
            model.encode_images(batch["images"]), _without_mimic(model).encode_images(batch["images"])
        )
    wrong = TeacherTargets(image_raw=unit(4, 11), text_raw=unit(4, 6))
    with pytest.raises(ValueError, match="do not match the model's projection"):
        model.forward_loss(wrong.attach(batch), weights)
    with pytest.raises(ValueError, match="mimic_dims"):
        create_model("mvlt_nano", mimic_dims=(12, -1))


def _without_mimic(model):
    twin = create_model("mvlt_nano", image_size=64, vocab_size=50).eval()
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("mimic_head.")})
    return twin


def test_raw_sources_shape_the_model_and_switch_their_losses_on(tmp_path):
    config = TrainConfig(teachers="image-raw", out=str(tmp_path))
    weights = config.resolved_loss_weights()
    assert weights["kd_image_raw"] == 1.0 and weights["kd_text_raw"] == 0.0
    assert config.recipe_model_overrides()["mimic_dims"] == (1280, 0)
    both = TrainConfig(teachers="text-raw,image-raw", out=str(tmp_path))
    assert both.teacher_model_overrides() == {"mimic_dims": (1280, 384)}
    assert TrainConfig(teachers="image", out=str(tmp_path)).teacher_model_overrides() == {}
    with pytest.raises(ConfigError, match="kd_text_raw"):  # the objectives silence the source
        TrainConfig(teachers="text-raw", objectives=["itc"], out=str(tmp_path)).validate()


# ---------------------------------------------------------------------------- teacher pair
def test_dual_encoder_learns_paired_features_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 2000
    latent = torch.randn(n, 6, generator=g)
    images = latent @ torch.randn(6, 20, generator=g) + 0.05 * torch.randn(n, 20, generator=g)
    texts = latent @ torch.randn(6, 12, generator=g) + 0.05 * torch.randn(n, 12, generator=g)
    groups = [str(i // 2) for i in range(n)]  # pairs of variants stay on one side of the split
    pair, fit = fit_dual_encoder(images, texts, groups, dim=8, max_epochs=20)
    assert 1 <= fit.epochs <= 20 and len(fit.held_out_r1) == 20
    assert max(fit.held_out_r1) > 0.5  # chance is 1 / 200
    loaded, loaded_fit = DualEncoder.load(pair.save(tmp_path / "pair", fit))
    assert loaded_fit == fit
    assert torch.allclose(loaded.embed_images(images[:5]), pair.embed_images(images[:5]))
    assert torch.allclose(pair.embed_texts(texts).norm(dim=-1), torch.ones(n))


# ---------------------------------------------------------------------------- feature cache
class _Catalogue:
    def __init__(self, texts: list[str]) -> None:
        self.texts, self.product_ids = texts, [str(i) for i in range(len(texts))]

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return "_Catalogue"


def test_teacher_features_are_computed_once_and_again_when_a_row_changes(tmp_path, monkeypatch):
    calls = []

    def fake_images(catalogue, *args, **kwargs):
        calls.append("image")
        return torch.ones(len(catalogue), 3)

    def fake_texts(texts, *args, **kwargs):
        calls.append("text")
        return torch.tensor([[float(len(t))] for t in texts])

    monkeypatch.setattr(features_module, "image_features", fake_images)
    monkeypatch.setattr(features_module, "text_features", fake_texts)
    first = features_module.teacher_features(_Catalogue(["a", "bb"]), tmp_path, progress=False)
    again = features_module.teacher_features(_Catalogue(["a", "bb"]), tmp_path, progress=False)
    assert calls == ["image", "text"] and torch.equal(first["text"], again["text"])
    changed = features_module.teacher_features(_Catalogue(["a", "ccc"]), tmp_path, progress=False)
    assert calls == ["image", "text"] * 2 and changed["text"][1, 0] == 3.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_an_interrupted_feature_pass_leaves_nothing_that_is_read_later(tmp_path, monkeypatch):
    def broken(texts, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(features_module, "image_features", lambda c, *a, **k: torch.ones(len(c), 3))
    monkeypatch.setattr(features_module, "text_features", broken)
    with pytest.raises(KeyboardInterrupt):
        features_module.teacher_features(_Catalogue(["a"]), tmp_path, progress=False)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


# ------------------------------------------------------------------------- the real teachers
def test_minilm_shares_the_bundled_vocabulary_id_for_id():
    teacher_packages()
    from mvlt.train.teachers.models import TextTeacher, check_vocabulary

    teacher = TextTeacher()
    tokenizer = bert_tokenizer()
    ours = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    assert len(teacher.vocabulary()) == tokenizer.vocab_size == 30522
    check_vocabulary(teacher, ours)  # the same tokens in the same order
    with pytest.raises(ValueError, match="differ first at id 3"):
        check_vocabulary(teacher, [*ours[:3], "[other]", *ours[4:]])


def test_real_teachers_give_features_that_know_what_a_text_says():
    teacher_packages()
    from mvlt.train.teachers.features import text_features
    from mvlt.train.teachers.models import ImageTeacher

    with torch.inference_mode():
        assert ImageTeacher()(torch.rand(2, 3, 64, 64)).shape == (2, 1280)
    feats = F.normalize(
        text_features(
            ["black wool coat with a hood", "hooded coat in black wool", "red bikini top"], progress=False
        ),
        dim=-1,
    )
    assert feats.shape == (3, 384)
    assert float(feats[0] @ feats[1]) > float(feats[0] @ feats[2]) + 0.2


@pytest.mark.slow
def test_a_run_with_every_teacher_starts_from_minilm_words_and_trains_the_kd_terms(tmp_path):
    teacher_packages()
    from mvlt.model import MVLT
    from mvlt.train.teachers.distill import minilm_word_embeddings

    config = tiny_config(
        tmp_path / "run",
        None,  # the bundled BERT vocabulary: MiniLM's
        data_options={"num_products": 40, "image_size": 32},
        image_size=32,
        steps=2,
        lr=1e-9,  # the weights barely move, so the starting table can be recognised
        teachers="all",
        teacher_cache=str(tmp_path / "cache"),
        model_overrides={"contrastive_dim": 16},
    )
    result = train(config)
    assert {"kd_image", "kd_text", "kd_cross"} <= set(result.losses)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "word embeddings from all-MiniLM-L6-v2" in log and "fitted in 16 d" in log
    words = MVLT.from_pretrained(tmp_path / "run").text_embed.word_embeddings.weight
    assert torch.allclose(words[1:], minilm_word_embeddings(words.shape[1])[1:], atol=1e-4)
    assert not words[0].any()  # [PAD]
    assert list((tmp_path / "cache").glob("features-*.safetensors"))  # cached for the next run


@pytest.mark.slow
def test_a_run_mimics_the_teachers_features_and_a_finetuning_from_it_keeps_the_projection(tmp_path):
    teacher_packages()
    from mvlt.model import MVLT
    from mvlt.train.teachers.distill import raw_targets

    config = tiny_config(
        tmp_path / "run", None, data_options={"num_products": 40, "image_size": 32}, image_size=32, steps=2,
        teachers="image-raw,text-raw", teacher_cache=str(tmp_path / "cache"),
        model_overrides={"contrastive_dim": 16},
    )  # fmt: skip
    result = train(config)
    assert {"kd_image_raw", "kd_text_raw"} <= set(result.losses)
    model = MVLT.from_pretrained(tmp_path / "run")
    assert model.config.mimic_dims == (1280, 384)
    assert (
        "image features of efficientnet-lite0, standardised" in (tmp_path / "run" / "train.log").read_text()
    )
    from mvlt.train.data import open_training_catalogue

    catalogue = open_training_catalogue(config, 32)
    targets = raw_targets(catalogue, ["image", "text"], tmp_path / "cache", False)
    features = features_module.teacher_features(catalogue, tmp_path / "cache", progress=False)
    for side in ("image", "text"):  # each channel standardised over the training rows, then unit rows
        x, target = features[side], targets[f"{side}_raw"]
        varies = target.abs().sum(0) > 0
        assert not varies[x.std(0) == 0].any()  # a constant channel (a ReLU that never fires) becomes 0
        assert varies.sum() > x.shape[1] // 2
        z = F.normalize((x[:, varies] - x[:, varies].mean(0)) / x[:, varies].std(0), dim=-1)
        assert torch.allclose(target.norm(dim=-1), torch.ones(len(x)), atol=1e-5)
        assert torch.allclose(target @ target.t(), z @ z.t(), atol=1e-4)
    fine = config.replace(
        task="finetune", init=str(tmp_path / "run"), out=str(tmp_path / "fine"), teachers=None
    )
    train(fine)  # no raw teacher now: the projection is carried along, frozen, unchanged
    tuned = MVLT.from_pretrained(tmp_path / "fine")
    assert torch.equal(tuned.mimic_head.image_proj.weight, model.mimic_head.image_proj.weight)


def test_annealed_teachers_weigh_less_at_every_step_down_to_the_end(tmp_path):
    teacher_packages()
    import json

    config = tiny_config(
        tmp_path / "run", None, data_options={"num_products": 40, "image_size": 32}, image_size=32, steps=4,
        log_every=1, teachers="text,image", teacher_cache=str(tmp_path / "cache"), kd_decay_start=0.5,
        model_overrides={"contrastive_dim": 16}, loss_weights={"kd_text": 2.0},
    )  # fmt: skip
    train(config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    weights = config.resolved_loss_weights()
    assert weights["kd_text"] == 2.0 and weights["kd_image"] == 1.0
    for row, share in zip(rows, (1.0, 1.0, 1.0, 0.5)):  # the update of step s is made at step s - 1 of 4
        parts = {k[5:]: v for k, v in row.items() if k.startswith("loss/") and k != "loss/total"}
        expected = sum(weights[n] * v * (share if n.startswith("kd_") else 1.0) for n, v in parts.items())
        assert {"kd_text", "kd_image"} <= set(parts)
        assert row["loss/total"] == pytest.approx(expected, rel=1e-5)
    assert annealed(3, 4, 0.5) == 0.5 and annealed(4, 4, 0.5) == 0.0 and annealed(2, 4, 0.5) == 1.0
    assert annealed(0, 4, 1.0) == annealed(4, 4, 1.0) == 1.0
    with pytest.raises(ConfigError, match="kd_decay_start"):
        tiny_config(tmp_path / "x", None, kd_decay_start=0.5).validate()  # no kd_* loss to anneal
    with pytest.raises(ConfigError, match="kd_decay_start"):
        config.replace(kd_decay_start=1.5).validate()
