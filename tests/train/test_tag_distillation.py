"""Tag distillation (``--teachers tags``, the ``kd_tags`` loss): the ImageNet teacher's linear probe
(held-out slice, softmax regression, selection), its out-of-fold probabilities, the loss, the
config's checks, and a fine-tuning run with the real teacher."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from mvlt.model import LossWeights, create_model
from mvlt.model.objectives import tag_distillation
from mvlt.train import ConfigError, TrainConfig, train
from mvlt.train.linear_probe import L2_GRID, choose, fit_probe, held_out
from mvlt.train.teachers.distill import TeacherTargets
from mvlt.train.teachers.probe import out_of_fold_probabilities
from mvlt.train.teachers.sources import parse_sources

from .helpers import tiny_config
from .test_tag_heads import shop  # noqa: F401 (the fixture)
from .test_teachers import teacher_packages

KD_TAGS = LossWeights(itc=0, mir=0, itm=0, mlm=0, category=0, subcategory=0, kd_tags=1)


def blobs(n: int, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of 16-d features around one centre per class: a separable problem."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 16, generator=generator) * 3
    y = torch.randint(0, classes, (n,), generator=generator)
    return centres[y] + torch.randn(n, 16, generator=generator), y


# ------------------------------------------------------------------------------------- the probe
def test_held_out_slice_is_stable_and_about_the_asked_share():
    groups = [f"product-{i}" for i in range(2000)]
    first, again = held_out(groups), held_out(list(reversed(groups)))
    assert torch.equal(first, again.flip(0))
    assert 0.12 < first.float().mean().item() < 0.18


def test_held_out_slice_survives_a_val_split_cut_by_the_plain_hash_and_empty_is_refused():
    # make_val_slice.py moves the products whose plain SHA-1 bucket is < 15 to "val": the probe's
    # own slice must not be those same products, or the training rows would hold none of it.
    groups = [f"{i:06d}" for i in range(3000)]
    remaining = [g for g in groups if int(hashlib.sha1(g.encode()).hexdigest(), 16) % 100 >= 15]
    assert 0.12 < held_out(remaining).float().mean().item() < 0.18
    x, y = blobs(50)
    with pytest.raises(ValueError, match="0 of 50 rows held out"):
        choose(x, y, torch.zeros(50, dtype=torch.bool), 3)


def test_probe_learns_a_separable_problem_and_selection_uses_the_held_out_rows():
    x, y = blobs(600)
    val = held_out([str(i) for i in range(600)])
    l2, held_out_acc = choose(x, y, val, 3)
    assert l2 in L2_GRID and held_out_acc > 0.9
    fitted = fit_probe(x, y, 3, l2)
    with torch.no_grad():
        assert (fitted(x).argmax(-1) == y).float().mean() > 0.9


def test_probe_reaches_the_regularised_optimum_and_l2_shrinks_the_weights():
    # Full-batch L-BFGS converges: the penalised objective's gradient vanishes at the fit, and
    # a warm start lands on the same optimum (the objective is strictly convex).
    x, y = blobs(300, classes=4, seed=2)
    probes = {l2: fit_probe(x, y, 4, l2) for l2 in (1.0, 1e-3)}
    for l2, probe in probes.items():
        loss = torch.nn.functional.cross_entropy(probe(x), y) + 0.5 * l2 * probe.weight.pow(2).sum()
        grads = torch.autograd.grad(loss, list(probe.parameters()))
        assert max(float(g.abs().max()) for g in grads) < 1e-3
    assert probes[1.0].weight.norm() < 0.5 * probes[1e-3].weight.norm()
    warm = fit_probe(x, y, 4, 1.0, start=probes[1e-3])
    assert torch.allclose(warm.weight, probes[1.0].weight, atol=1e-3)


def test_soft_targets_one_hot_equal_labels_and_a_uniform_target_flattens_the_probe():
    x, y = blobs(300, classes=4, seed=3)
    hard = fit_probe(x, y, 4, 0.01)
    one_hot = fit_probe(x, torch.nn.functional.one_hot(y, 4).float(), 4, 0.01)
    assert torch.allclose(hard.weight, one_hot.weight, atol=1e-3)
    uniform = fit_probe(x, torch.full((300, 4), 0.25), 4, 0.01)
    assert uniform.weight.abs().max() < 1e-3
    # Selection scores against the labels, whatever the targets: uniform targets cannot rank.
    val = held_out([str(i) for i in range(300)])
    assert choose(x, y, val, 4, targets=torch.nn.functional.one_hot(y, 4).float()) == choose(x, y, val, 4)
    assert choose(x, y, val, 4, targets=torch.full((300, 4), 0.25))[1] < 0.5


def test_out_of_fold_probabilities_never_come_from_a_probe_that_saw_the_row():
    # Labels that the features cannot predict: a probe that had fitted a row would recall its label
    # (64-d, 200 rows: memorisable); out of fold, accuracy stays near chance.
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 64, generator=generator), torch.randint(0, 2, (200,), generator=generator)
    groups = [f"p{i}" for i in range(200)]
    probabilities, record = out_of_fold_probabilities(x, y, 2, groups)
    assert record["out_of_fold_acc"] < 0.65
    assert torch.allclose(probabilities.sum(-1), torch.ones(200))
    # A separable problem is learned out of fold, and unlabelled rows are predicted, not fitted.
    x, y = blobs(400)
    y[:40] = -1
    probabilities, record = out_of_fold_probabilities(x, y, 3, [f"p{i}" for i in range(400)])
    _, truth = blobs(400)
    assert record["out_of_fold_acc"] > 0.9
    assert (probabilities[:40].argmax(-1) == truth[:40]).float().mean() > 0.9
    with pytest.raises(ValueError, match="folds"):
        out_of_fold_probabilities(x, y, 3, [f"p{i}" for i in range(400)], folds=1)


# -------------------------------------------------------------------------------------- the loss
def test_tag_distillation_is_zero_on_the_teacher_and_checks_its_targets():
    target = torch.softmax(torch.randn(5, 4), -1)
    assert tag_distillation({"colour": target.log()}, {"colour": target}) < 1e-6
    assert tag_distillation({"colour": torch.zeros(5, 4)}, {"colour": target}) > 0
    with pytest.raises(ValueError, match="'pattern'"):
        tag_distillation({"pattern": torch.zeros(5, 4)}, {"colour": target})
    with pytest.raises(ValueError, match="do not match"):
        tag_distillation({"colour": torch.zeros(5, 3)}, {"colour": target})


def test_model_distils_tag_probabilities_into_the_image_heads_and_names_missing_targets():
    torch.manual_seed(0)
    model = create_model("mvlt_nano", image_size=64, vocab_size=50, tag_classes={"colour": 4, "pattern": 3})
    batch = {
        "images": torch.rand(6, 3, 64, 64),
        "input_ids": torch.randint(5, 50, (6, 7)),
        "index": torch.arange(6),
    }
    with pytest.raises(ValueError, match="target_tags"):
        model.forward_loss(batch, KD_TAGS)
    tags = {"colour": torch.softmax(torch.randn(6, 4), -1), "pattern": torch.softmax(torch.randn(6, 3), -1)}
    losses = model.forward_loss(TeacherTargets(tags=tags).attach(batch), KD_TAGS)
    assert set(losses) == {"kd_tags", "total"}  # no labels needed: every row is taught
    with torch.no_grad():
        expected = tag_distillation(model.tag_logits(batch["images"]), tags)
    assert torch.allclose(losses["kd_tags"], expected, atol=1e-5)
    losses["total"].backward()
    assert model.stages[0].patch_embed.proj.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ the config
def test_tags_source_needs_tag_heads_and_is_not_part_of_all():
    assert "tags" not in parse_sources("all") and parse_sources("all,tags")[-1] == "tags"
    with pytest.raises(ConfigError, match="--labels"):
        TrainConfig(teachers="tags").validate()
    config = TrainConfig(task="finetune", init="x", labels=["colour"], teachers="tags")
    assert config.resolved_loss_weights()["kd_tags"] == 1.0
    with pytest.raises(ConfigError, match="kd_tags"):  # switched off by the objectives: refused
        TrainConfig(
            task="finetune", init="x", labels=["colour"], teachers="tags", objectives=["tags"]
        ).validate()


def test_a_finetuning_run_learns_the_teachers_tag_probabilities(tmp_path: Path, shop: Path, pretrained: Path):  # noqa: F811
    teacher_packages()
    config = tiny_config(
        tmp_path / "ft", None, task="finetune", init=str(pretrained), data=str(shop), data_options={},
        image_size=None, labels=["colour", "pattern"], steps=2, teachers="tags",
        teacher_cache=str(tmp_path / "cache"),
    )  # fmt: skip
    result = train(config)
    assert {"tags", "kd_tags"} <= set(result.losses)
    log = (tmp_path / "ft" / "train.log").read_text()
    assert "tags 'colour' from an efficientnet-lite0 linear probe" in log.lower()
    assert "tags 'pattern'" in log and "out-of-fold accuracy" in log
    assert "fitted in" not in log  # no teacher pair: kd_tags needs only the image features


def test_a_second_run_reads_the_fitted_tag_targets_from_the_cache(
    tmp_path: Path,
    shop: Path,  # noqa: F811
    pretrained: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    teacher_packages()
    config = dict(
        task="finetune", init=str(pretrained), data=str(shop), data_options={}, image_size=None,
        labels=["colour"], steps=1, teachers="tags", teacher_cache=str(tmp_path / "cache"),
    )  # fmt: skip
    train(tiny_config(tmp_path / "first", None, **config))
    assert len(list((tmp_path / "cache").glob("tags-*/probabilities.safetensors"))) == 1

    def refit(*args, **kwargs):
        raise AssertionError("the probe was fitted again")

    monkeypatch.setattr("mvlt.train.teachers.distill.out_of_fold_probabilities", refit)
    train(tiny_config(tmp_path / "second", None, **config))
    first, second = ((tmp_path / run / "train.log").read_text() for run in ("first", "second"))
    line = next(x for x in first.splitlines() if "tags 'colour'" in x)
    assert line in second.splitlines()
