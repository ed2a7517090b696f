"""Fine-tuned tag heads in ``mvlt tag`` and ``mvlt.tagging``: tags with probabilities from the image
alone, combined with zero-shot vocabularies (each attribute says its source), and scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.cli import main
from mvlt.tagging import FINE_TUNED, ZERO_SHOT, Tagger, tag_images

QUIET = ["--no-progress", "--threads", "2"]


def tag(*args: str) -> int:
    return main(["tag", *args, *QUIET])


@pytest.fixture(scope="module")
def model(headed_checkpoint: Path) -> mvlt.MVLT:
    return mvlt.MVLT.from_pretrained(headed_checkpoint).eval()


def test_label_maps_come_back_with_the_checkpoint(model: mvlt.MVLT) -> None:
    assert model.label_maps.tag_columns == ["colour", "pattern"] == list(model.tag_heads)
    assert model.config.tag_classes["colour"] == len(model.label_maps.tag_names("colour"))


def test_heads_give_the_softmax_of_their_logits_from_the_image_only(model: mvlt.MVLT) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tags = tag_images(model, images, top_k=2)
    with torch.inference_mode():
        expected = model.tag_logits(images)["colour"].softmax(-1)
    names = model.label_maps.tag_names("colour")
    for row, probs in zip(tags, expected):
        order = probs.argsort(descending=True)[:2].tolist()
        assert [t.label for t in row["colour"]] == [names[i] for i in order]
        assert [t.probability for t in row["colour"]] == pytest.approx(probs[order].tolist(), abs=1e-5)
    assert [t.to_dict() for t in tags[0]["pattern"]] == [
        t.to_dict() for t in tag_images(model, images)[0]["pattern"][:2]
    ]


def test_heads_and_zero_shot_combine_with_their_sources(model: mvlt.MVLT) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tagger = Tagger(model, {"colour": ["black", "white"], "fit": ["slim", "loose"]})
    assert tagger.sources == {"colour": FINE_TUNED, "pattern": FINE_TUNED, "fit": ZERO_SHOT}
    by_source = tagger.tag_by_source(images)
    assert set(by_source[0]) == {FINE_TUNED, ZERO_SHOT}
    assert {t.label for t in by_source[0][ZERO_SHOT]["colour"]} <= {"black", "white"}
    merged = tagger.tag(images)[0]
    assert (
        merged["colour"] == by_source[0][FINE_TUNED]["colour"]
        and merged["fit"] == by_source[0][ZERO_SHOT]["fit"]
    )
    assert Tagger(model, {"fit": ["slim", "loose"]}, heads=False).sources == {"fit": ZERO_SHOT}


def test_mvlt_tag_uses_the_heads_without_a_vocabulary(
    headed_checkpoint: Path, shop: Path, tmp_path: Path, capsys
):
    out = tmp_path / "tags.jsonl"
    assert tag("--checkpoint", str(headed_checkpoint), "--data", str(shop), "--split", "test",
               "--zero-shot", "fit=slim,loose", "--out", str(out)) == 0  # fmt: skip
    assert "colour (fine-tuned), pattern (fine-tuned), fit (zero-shot)" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12
    assert records[0]["sources"] == {"fit": "zero-shot", "colour": "fine-tuned", "pattern": "fine-tuned"}
    assert 0 < records[0]["tags"]["colour"][0]["probability"] <= 1


def test_evaluate_scores_fine_tuned_and_zero_shot_beside_the_majority(
    headed_checkpoint: Path, shop: Path, tmp_path: Path, capsys
):
    out = tmp_path / "eval"
    assert tag("--checkpoint", str(headed_checkpoint), "--data", str(shop), "--evaluate",
               "--zero-shot", "colour", "--out", str(out)) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "colour: fine-tuned accuracy" in printed and "zero-shot accuracy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for stat in ("acc_finetuned", "macro_f1_finetuned", "acc_zeroshot", "acc_majority", "macro_f1_majority"):
        assert 0.0 <= metrics[f"tag_colour_{stat}"] <= 1.0
    assert "tag_pattern_acc_finetuned" in metrics and "tag_pattern_acc_zeroshot" not in metrics
    assert metrics["tag_colour_unlabelled_items"] == 1
    assert metrics["protocol"]["sources"] == {
        "colour": ["fine-tuned", "zero-shot"],
        "pattern": ["fine-tuned"],
    }


def test_a_checkpoint_without_heads_needs_a_vocabulary(checkpoint: Path, shop: Path, tmp_path: Path, capsys):
    assert tag("--checkpoint", str(checkpoint), "--data", str(shop), "--out", str(tmp_path / "t.jsonl")) == 2
    err = capsys.readouterr().err
    assert "no tag heads" in err and "--zero-shot" in err
