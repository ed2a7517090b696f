"""Fine-tuned tag heads (``mvlt finetune --labels colour,pattern``): one image-only head per catalogue
column, label maps saved with the checkpoint, rows without a value left out of the loss and counted."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.data.batches import encode_tags
from mvlt.data.labels import LabelMaps
from mvlt.masking import IGNORE_INDEX
from mvlt.model.config import LossWeights
from mvlt.train import TrainConfig, train
from mvlt.train.cli import main

from ..tagging.conftest import write_tagged_catalogue
from .helpers import tiny_config

TAGS_ONLY = LossWeights(itc=0, mir=0, itm=0, mlm=0, category=0, subcategory=0, tags=1)
BOTH_TAGS = LossWeights(itc=0, mir=0, itm=0, mlm=0, category=0, subcategory=0, tags=1, tags_text=1)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tagging tests' catalogue (64 px), with the colour of two training rows left empty."""
    manifest = write_tagged_catalogue(tmp_path_factory.mktemp("shop"), products=32)
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in [r for r in rows if r["split"] == "train"][:2]:
        row["colour"] = ""
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_label_maps_with_tags_round_trip(tmp_path: Path):
    maps = LabelMaps.build(
        ["a", "b"], ["x"], {"colour": ["Black", "", "White", "Black"], "pattern": ["Solid", "Dot"]}
    )
    assert maps.tag_columns == ["colour", "pattern"] and maps.tag_names("colour") == ["Black", "White"]
    loaded = LabelMaps.load(maps.save(tmp_path / "labels.json"))
    assert loaded == maps and loaded.tag_names("pattern") == ["Dot", "Solid"]
    assert loaded != LabelMaps.build(["a", "b"], ["x"])  # tags are part of the maps
    plain = LabelMaps.build(["a"], ["x"])
    assert "tags" not in plain.to_dict()  # maps without tags keep their old file
    assert LabelMaps.load(plain.save(tmp_path / "plain.json")).tag_columns == []


def test_rows_without_a_value_are_counted_and_left_out_of_the_loss():
    maps = LabelMaps.build([], [], {"colour": ["Black", "White"]})
    ids = encode_tags({"colour": ["White", "", "Black", ""]}, maps)
    assert ids[:, 0].tolist() == [1, IGNORE_INDEX, 0, IGNORE_INDEX] and maps.tag_unlabelled["colour"] == 2

    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=64, vocab_size=64, tag_classes={"colour": 2})
    images = torch.rand(4, 3, 64, 64)
    batch = {
        "images": images,
        "input_ids": torch.ones(4, 5, dtype=torch.long),
        "tag_labels": torch.tensor(ids),
    }
    model.eval()  # no dropout: the text pass alone must give the same logits
    losses = model.forward_loss(batch, BOTH_TAGS)
    labelled = [0, 2]
    logits = model.tag_logits(images[labelled])["colour"]
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[labelled, 0]))
    assert torch.allclose(losses["tags"], expected, atol=1e-6)
    text_logits = model.text_tag_logits(batch["input_ids"][labelled])["colour"]
    expected = torch.nn.functional.cross_entropy(text_logits, torch.tensor(ids[labelled, 0]))
    assert torch.allclose(losses["tags_text"], expected, atol=1e-6)
    assert torch.allclose(losses["total"], losses["tags"] + losses["tags_text"])
    # A row whose text is another product's (the paper's ITM negatives) is left out of tags_text.
    negative = model.forward_loss({**batch, "itm_labels": torch.tensor([1, 1, 0, 1])}, BOTH_TAGS)
    only_first = torch.nn.functional.cross_entropy(text_logits[:1], torch.tensor(ids[:1, 0]))
    assert torch.allclose(negative["tags_text"], only_first, atol=1e-6)


def test_tag_heads_read_the_image_only():
    """The image heads' loss and logits do not move when the batch's texts change: a photo is
    tagged the same with its description, another one, or none. Their text twins' loss does."""
    torch.manual_seed(0)
    model = mvlt.create_model(
        "mvlt_nano", image_size=64, vocab_size=64, tag_classes={"colour": 3, "pattern": 2}
    ).eval()
    assert list(model.text_tag_heads) == list(model.tag_heads) == ["colour", "pattern"]
    images = torch.rand(2, 3, 64, 64)
    labels = torch.tensor([[0, 1], [2, 0]])
    losses = [
        model.forward_loss({"images": images, "input_ids": ids, "tag_labels": labels}, BOTH_TAGS)
        for ids in (torch.randint(1, 64, (2, 7)), torch.randint(1, 64, (2, 3)))
    ]
    assert torch.equal(losses[0]["tags"], losses[1]["tags"])
    assert not torch.equal(losses[0]["tags_text"], losses[1]["tags_text"])
    assert model.tag_logits(images)["pattern"].shape == (2, 2)
    assert model.text_tag_logits(torch.randint(1, 64, (2, 5)))["pattern"].shape == (2, 2)


def test_text_tag_heads_learn_a_label_the_text_states():
    """A toy set where the text alone says the label (the photos are noise): tags_text falls."""
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=64, vocab_size=64, tag_classes={"colour": 4})
    labels = torch.arange(8) % 4
    ids = torch.stack([torch.tensor([2, 10 + int(c), 3]) for c in labels])  # [CLS] colour [SEP]
    batch = {"images": torch.rand(8, 3, 64, 64), "input_ids": ids, "tag_labels": labels[:, None]}
    text_only = LossWeights(itc=0, mir=0, itm=0, mlm=0, category=0, subcategory=0, tags_text=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        loss = model.forward_loss(batch, text_only)["tags_text"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    assert history[-1] < 0.25 * history[0]
    with torch.no_grad():
        assert torch.equal(model.eval().text_tag_logits(ids)["colour"].argmax(-1), labels)


def test_finetune_trains_one_head_per_column(tmp_path: Path, shop: Path, pretrained: Path, capsys):
    cfg = tiny_config(tmp_path / "ft", None, task="finetune", init=str(pretrained), data=str(shop),
                      data_options={}, image_size=None, labels=["colour", "pattern"], steps=2)  # fmt: skip
    weights = cfg.resolved_loss_weights()
    assert weights["tags"] == weights["tags_text"] == 1 and weights["category"] == 0
    train(cfg)
    tuned = mvlt.MVLT.from_pretrained(cfg.out)
    maps = tuned.label_maps
    assert maps.tag_columns == ["colour", "pattern"] == list(tuned.text_tag_heads)
    assert tuned.config.tag_classes == {c: len(maps.tag_names(c)) for c in maps.tag_columns}
    assert tuned.category_head is None  # the text-reading recognition heads are not trained
    log = (Path(cfg.out) / "train.log").read_text()
    assert re.search(r"tags [0-9.]+, tags_text [0-9.]+", log), log  # both losses, logged apart
    assert "tag head colour:" in log and "2 training rows without a value" in log
    assert "tag head pattern:" in log and "0 training rows without a value" in log
    assert "tag head colour:" in capsys.readouterr().err
    # Fine-tuning again from it keeps a head whose labels are unchanged.
    again = tiny_config(tmp_path / "ft2", None, task="finetune", init=str(cfg.out), data=str(shop),
                        data_options={}, image_size=None, labels=["colour"], steps=1, lr=1e-9)  # fmt: skip
    train(again)
    retuned = mvlt.MVLT.from_pretrained(again.out)
    assert list(retuned.tag_heads) == list(retuned.text_tag_heads) == ["colour"]
    for heads in ("tag_heads", "text_tag_heads"):
        before, after = (getattr(m, heads)["colour"].fc.weight for m in (tuned, retuned))
        assert torch.allclose(before, after, atol=1e-5)


def test_objectives_naming_tags_train_the_text_heads_too():
    cfg = TrainConfig(task="finetune", init="x", labels=["colour"], objectives=["tags", "category"])
    assert cfg.resolved_loss_weights()["tags_text"] == 1
    alone = TrainConfig(task="finetune", init="x", labels=["colour"], objectives=["tags"],
                        loss_weights={"tags_text": 0})  # fmt: skip
    assert alone.resolved_loss_weights()["tags_text"] == 0


def test_an_unknown_column_is_a_usage_error(tmp_path: Path, shop: Path, pretrained: Path, capsys):
    args = ["finetune", "--init", str(pretrained), "--data", str(shop), "--labels", "colour,fabric",
            "--steps", "1", "--no-progress", "--no-tensorboard", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--labels" in err and "'fabric'" in err and "colour" in err and "pattern" in err
    assert main([*args[:-2], "--labels", "colour,colour", "--out", str(tmp_path / "o")]) == 2
    assert "twice" in capsys.readouterr().err
    assert main([*args[:5], "--objectives", "tags", "--out", str(tmp_path / "o")]) == 2
    assert "--labels" in capsys.readouterr().err


def test_augmentation_is_checked_and_trains(tmp_path: Path, shop: Path, pretrained: Path, capsys):
    args = ["finetune", "--init", str(pretrained), "--data", str(shop), "--labels", "colour",
            "--steps", "2", "--batch-size", "8", "--no-progress", "--no-tensorboard",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main([*args, "--augment", "flip,rotate"]) == 2
    assert "augment" in capsys.readouterr().err
    with pytest.raises(ValueError, match="MIR"):
        TrainConfig(augment=["flip"]).validate()
    assert main([*args, "--augment", "flip,crop"]) == 0
    assert "augmentation flip,crop" in (tmp_path / "o" / "train.log").read_text()
