"""Recognition heads fitted as linear probes on the trained encoder (``fit_heads``): the folded
output layer, the fit on a catalogue, the engine's last stage and the config's check."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mvlt
from mvlt.data.batches import PairDataset
from mvlt.data.sources import open_catalogue
from mvlt.model.heads import ClsTokenHead
from mvlt.train import ConfigError, train
from mvlt.train.cli import flag_overrides, register
from mvlt.train.head_fit import fit_recognition_heads, head_features, set_output_layer
from mvlt.train.linear_probe import fit_probe

from .helpers import IMAGE_SIZE, NUM_PRODUCTS, tiny_config
from .test_tag_heads import shop  # noqa: F401 (the fixture)
from .test_teachers import teacher_packages


def test_the_folded_output_layer_gives_the_probes_logits_on_standardised_features():
    torch.manual_seed(0)
    head = ClsTokenHead(12, 16, 5, extra_bias=True)
    torch.nn.init.normal_(head.extra_bias)
    cls = torch.randn(40, 12)
    hidden = head.embed(cls).detach()
    mean, std = hidden.mean(0), hidden.std(0) + 1e-6
    probe = fit_probe((hidden - mean) / std, torch.randint(0, 5, (40,)), 5, l2=0.1)
    set_output_layer(head, probe, mean, std)
    with torch.no_grad():
        assert torch.allclose(head(cls), probe((hidden - mean) / std), atol=1e-5)


def test_fitted_heads_classify_the_training_pairs_as_the_probe_does(tmp_path: Path, pretrained: Path):
    # A 2-step fine-tuning leaves its heads near chance; the fit makes them read the [CLS] as well
    # as a linear map can, and model.classify (the evaluation's path) then agrees with the record.
    cfg = tiny_config(tmp_path / "ft", None, task="finetune", init=str(pretrained), image_size=None, steps=2)
    train(cfg)
    model = mvlt.MVLT.from_pretrained(cfg.out).eval()
    catalogue = open_catalogue("synthetic", split="train", num_products=NUM_PRODUCTS, image_size=IMAGE_SIZE)
    dataset = PairDataset(catalogue, model.tokenizer, label_maps=model.label_maps, image_size=IMAGE_SIZE)
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])

    def accuracy(name: str) -> float:
        with torch.no_grad():
            recognition = model.classify(batch["images"], batch["input_ids"], batch["attention_mask"])
        logits = getattr(recognition, name)
        return float((logits.argmax(-1) == batch[f"{name}_labels"]).float().mean())

    before = {name: accuracy(name) for name in ("category", "subcategory")}
    heads = ("category_head", "subcategory_head")
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(heads)}
    records = fit_recognition_heads(model, catalogue, IMAGE_SIZE)
    for name, record in records.items():
        assert record["train_acc"] == pytest.approx(accuracy(name), abs=1e-6)
        assert record["train_acc"] > before[name] and record["l2"] > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())  # only the heads change
    features, labels = head_features(model, dataset)
    assert features["subcategory"].shape == (len(dataset), model.subcategory_head.fc.in_features)
    assert torch.equal(labels["category"], batch["category_labels"])


def test_a_finetuning_run_ends_by_fitting_its_heads(tmp_path: Path, pretrained: Path):
    cfg = tiny_config(tmp_path / "ft", None, task="finetune", init=str(pretrained), image_size=None, steps=2,
                      fit_heads=True)  # fmt: skip
    train(cfg)
    saved = load_file(str(Path(cfg.out) / "model.safetensors"))
    trained = load_file(str(Path(cfg.out) / "checkpoints" / "step-0000002" / "model.safetensors"))
    changed = {k for k in saved if not torch.equal(saved[k], trained[k])}
    # The output folder holds the fitted output layers; the resumable checkpoint the trained ones.
    assert changed == {f"{h}_head.fc.{p}" for h in ("category", "subcategory") for p in ("weight", "bias")}
    log = (Path(cfg.out) / "train.log").read_text(encoding="utf-8")
    assert "fit heads: subcategory output layer fitted as a linear probe on the [CLS] (L2" in log


def test_fit_heads_needs_the_recognition_heads_and_is_a_flag(tmp_path: Path, tokenizer_dir: Path):
    with pytest.raises(ConfigError, match="fit_heads"):
        tiny_config(tmp_path / "pt", tokenizer_dir, fit_heads=True).validate()  # pre-training: no heads
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    for task in ("pretrain", "finetune"):
        assert flag_overrides(parser.parse_args([task, "--fit-heads"]))["fit_heads"] is True
        assert "fit_heads" not in flag_overrides(parser.parse_args([task]))


def test_teacher_probabilities_steer_the_fit_at_their_weight(tmp_path: Path, pretrained: Path):
    # Teachers that name every row's neighbour class: at weight 1 the fitted head follows them,
    # at weight 0 it is the plain fit. Probabilities of the wrong shape are refused.
    cfg = tiny_config(tmp_path / "ft", None, task="finetune", init=str(pretrained), image_size=None, steps=1)
    train(cfg)
    catalogue = open_catalogue("synthetic", split="train", num_products=NUM_PRODUCTS, image_size=IMAGE_SIZE)
    model = mvlt.MVLT.from_pretrained(cfg.out).eval()
    dataset = PairDataset(catalogue, model.tokenizer, label_maps=model.label_maps, image_size=IMAGE_SIZE)
    _, labels = head_features(model, dataset)
    classes = {"category": model.label_maps.num_categories, "subcategory": model.label_maps.num_subcategories}
    shifted = {n: (labels[n].clamp(min=0) + 1) % classes[n] for n in classes}
    teacher = {n: torch.nn.functional.one_hot(shifted[n], classes[n]).float() for n in classes}
    plain = fit_recognition_heads(mvlt.MVLT.from_pretrained(cfg.out), catalogue, IMAGE_SIZE)
    unweighted = fit_recognition_heads(mvlt.MVLT.from_pretrained(cfg.out), catalogue, IMAGE_SIZE,
                                       teacher=teacher, teacher_weight=0.0)  # fmt: skip
    assert unweighted == plain
    steered = fit_recognition_heads(model, catalogue, IMAGE_SIZE, teacher=teacher, teacher_weight=1.0)
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        guess = model.classify(
            batch["images"], batch["input_ids"], batch["attention_mask"]
        ).subcategory.argmax(-1)
    assert (guess == shifted["subcategory"]).float().mean() > 0.9
    assert steered["subcategory"]["train_acc"] < 0.1 < plain["subcategory"]["train_acc"]
    with pytest.raises(ValueError, match="subcategory teacher probabilities"):
        bad = {**teacher, "subcategory": teacher["subcategory"][:, :-1]}
        fit_recognition_heads(model, catalogue, IMAGE_SIZE, teacher=bad, teacher_weight=0.5)
    with pytest.raises(ValueError, match="without the teachers"):
        fit_recognition_heads(model, catalogue, IMAGE_SIZE, teacher_weight=0.5)


def test_fit_heads_teacher_needs_the_fit_and_a_share(tmp_path: Path):
    base = dict(task="finetune", init="x", fit_heads=True)
    for bad in (
        {"fit_heads_teacher": 1.5},
        {"fit_heads_teacher": -0.1},
        {"fit_heads": False, "fit_heads_teacher": 0.6},
    ):
        with pytest.raises(ConfigError, match="fit_heads_teacher"):
            tiny_config(tmp_path / "x", None, **{**base, **bad}).validate()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["finetune", "--fit-heads", "--fit-heads-teacher", "0.6"])
    assert flag_overrides(args)["fit_heads_teacher"] == 0.6


def test_a_run_fits_its_heads_on_the_teachers_probabilities(tmp_path: Path, shop: Path, pretrained: Path):  # noqa: F811
    teacher_packages()
    cfg = tiny_config(tmp_path / "ft", None, task="finetune", init=str(pretrained), data=str(shop),
                      data_options={}, image_size=None, steps=1, fit_heads=True, fit_heads_teacher=0.6,
                      teacher_cache=str(tmp_path / "cache"))  # fmt: skip
    train(cfg)
    log = (Path(cfg.out) / "train.log").read_text(encoding="utf-8")
    assert "linear probe on the [CLS], teachers' probabilities at 0.6 (L2" in log
    assert len(list((tmp_path / "cache").glob("recognition-*/probabilities.safetensors"))) == 2


def test_heads_that_read_the_itc_embeddings_are_fine_tuned_and_fitted_on_them(
    tmp_path: Path, pretrained: Path
):
    # A fine-tuned model whose heads read the [CLS] alone, fine-tuned again with heads that also
    # read the ITC embeddings: they start fresh (another shape), learn, and the fit reads both.
    first = tiny_config(
        tmp_path / "ft", None, task="finetune", init=str(pretrained), image_size=None, steps=1
    )
    train(first)
    cfg = tiny_config(tmp_path / "itc", None, task="finetune", init=first.out, image_size=None, steps=2,
                      fit_heads=True, model_overrides={"recognition_reads_itc": True})  # fmt: skip
    train(cfg)
    model = mvlt.MVLT.from_pretrained(cfg.out).eval()
    dim = model.config.contrastive_dim
    assert model.config.recognition_reads_itc and model.subcategory_head.extra_dim == 2 * dim
    log = (Path(cfg.out) / "train.log").read_text(encoding="utf-8")
    assert "linear probe on the [CLS] and the ITC embeddings (L2" in log
    catalogue = open_catalogue("synthetic", split="train", num_products=NUM_PRODUCTS, image_size=IMAGE_SIZE)
    dataset = PairDataset(catalogue, model.tokenizer, label_maps=model.label_maps, image_size=IMAGE_SIZE)
    features, _ = head_features(model, dataset)
    assert features["subcategory"].shape == (len(dataset), model.config.word_embed_dim + 2 * dim)
    records = fit_recognition_heads(model, catalogue, IMAGE_SIZE)
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits = model.classify(batch["images"], batch["input_ids"], batch["attention_mask"]).subcategory
    accuracy = float((logits.argmax(-1) == batch["subcategory_labels"]).float().mean())
    assert records["subcategory"]["train_acc"] == pytest.approx(accuracy, abs=1e-6)
