"""Tags by the votes of the nearest labelled photos (``--neighbours``): the votes, their blend with
the heads, the memory built from a catalogue, and the flags of both commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.cli import main
from mvlt.data.sources import open_catalogue
from mvlt.tagging import BLENDED, FINE_TUNED, NEIGHBOURS, Neighbours, Tagger, build_neighbours, head_labels

QUIET = ["--no-progress", "--threads", "2"]


def memory(k: int = 2) -> Neighbours:
    features = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=-1)
    targets = {"colour": torch.tensor([0, -1, 1])}  # the second photo has no colour: it does not vote
    return Neighbours(features, {"colour": ["Black", "Red"]}, targets, k=k, temperature=0.1)


def test_the_nearest_vote_with_softmax_weights_and_unlabelled_photos_abstain():
    votes = memory(k=3).probabilities(torch.tensor([[2.0, 0.0]]))["colour"][0]  # cosine 1, 0.99, 0
    w = torch.tensor([1.0, 0.0]).div(0.1).softmax(0)  # the unlabelled photo's weight is dropped
    assert votes.sum().item() == pytest.approx(1.0)
    assert votes.tolist() == pytest.approx(w.tolist(), abs=1e-5)
    only_unlabelled = memory(k=2).probabilities(torch.tensor([[1.0, 0.05]]))["colour"][0]
    assert only_unlabelled[0] > 0.99  # k=2: Black and the unlabelled photo; Red is not among them


def test_a_memory_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="2 colour labels for 3 photos"):
        Neighbours(torch.zeros(3, 2), {"colour": ["a"]}, {"colour": torch.zeros(2, dtype=torch.long)})


def test_the_blend_is_the_heads_and_the_votes_mixed_by_weight(headed_checkpoint: Path, shop: Path):
    model = mvlt.MVLT.from_pretrained(headed_checkpoint).eval()
    heads = head_labels(model)
    catalogue = open_catalogue(str(shop), split="train")
    neighbours, skips = build_neighbours(model, catalogue, heads, k=3)
    assert len(neighbours) == len(catalogue) and not skips.total
    images = torch.rand(4, 3, model.config.image_size, model.config.image_size)
    for weight in (0.0, 0.3, 1.0):
        tagger = Tagger(model, neighbours=neighbours, neighbour_weight=weight)
        assert tagger.sources == dict.fromkeys(heads, BLENDED)
        p = tagger.probabilities(images)
        for column in heads:
            mixed = (1 - weight) * p[FINE_TUNED][column] + weight * p[NEIGHBOURS][column]
            torch.testing.assert_close(p[BLENDED][column], mixed)


def test_a_photo_in_the_memory_is_tagged_with_its_own_label(headed_checkpoint: Path, shop: Path):
    """End to end through the image pass: with k = 1 and a memory holding the scored photos
    themselves, the votes are each photo's own label (the random model's features still tell
    different photos apart), which the command line refuses for an evaluation."""
    model = mvlt.MVLT.from_pretrained(headed_checkpoint).eval()
    catalogue = open_catalogue(str(shop), split="test")
    neighbours, _ = build_neighbours(model, catalogue, head_labels(model), k=1)
    tagger = Tagger(model, neighbours=neighbours, neighbour_weight=1.0)
    from mvlt.data.images import prepare_image

    size = model.config.image_size
    images = torch.stack([prepare_image(catalogue.load_image(i), size) for i in range(len(catalogue))])
    top = tagger.probabilities(images)[NEIGHBOURS]["pattern"].argmax(1)
    assert top.tolist() == neighbours.targets["pattern"].tolist()


def test_a_checkpoint_without_heads_or_other_labels_is_refused(checkpoint: Path, headed_checkpoint: Path):
    headless = mvlt.MVLT.from_pretrained(checkpoint).eval()
    with pytest.raises(ValueError, match="no tag heads"):
        Tagger(headless, {"colour": ["black", "red"]}, neighbours=memory())
    headed = mvlt.MVLT.from_pretrained(headed_checkpoint).eval()
    with pytest.raises(ValueError, match="not the tag heads'"):
        Tagger(headed, neighbours=memory())


def test_evaluate_scores_the_votes_and_the_blend(headed_checkpoint: Path, shop: Path, tmp_path: Path):
    out = tmp_path / "eval"
    args = ["--checkpoint", str(headed_checkpoint), "--data", str(shop), "--out", str(out)]
    votes = ["--neighbours", str(shop), "--neighbours-k", "3", "--neighbours-temperature", "0.1"]
    assert main(["evaluate", "--task", "tagging", *args, *votes, "--neighbour-weight", "0.25", *QUIET]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for source in ("finetuned", "neighbours", "finetunedneighbours"):
        for mode in ("", "_image_text"):
            assert 0.0 <= metrics[f"tag_colour_acc_{source}{mode}"] <= 1.0
    record = metrics["protocol"]["neighbours"]
    assert record["photos"] == 12 and record["k"] == 3 and record["weight"] == 0.25
    assert record["temperature"] == 0.1
    tags = json.loads((out / "tags.jsonl").read_text().splitlines()[0])
    assert tags["sources"] == {"colour": BLENDED, "pattern": BLENDED}


def test_the_scored_split_cannot_vote_for_itself(headed_checkpoint: Path, shop: Path, tmp_path: Path, capsys):
    args = ["--checkpoint", str(headed_checkpoint), "--data", str(shop), "--out", str(tmp_path / "e")]
    code = main(["evaluate", "--task", "tagging", *args, "--neighbours", str(shop),
                 "--neighbours-split", "test", *QUIET])  # fmt: skip
    assert code == 2 and "cannot vote for its own tags" in capsys.readouterr().err


def test_tag_flags_are_checked_before_loading(headed_checkpoint: Path, shop: Path, tmp_path: Path, capsys):
    out = tmp_path / "t.csv"
    base = ["tag", "--checkpoint", str(headed_checkpoint), "--data", str(shop), "--out", str(out)]
    assert main([*base, "--neighbours", str(shop), "--neighbour-weight", "1.5", *QUIET]) == 2
    assert "--neighbour-weight 1.5: must be a number in [0, 1]" in capsys.readouterr().err
    assert main([*base, "--neighbours-k", "5", *QUIET]) == 2
    assert "--neighbours-k: only with --neighbours MANIFEST" in capsys.readouterr().err
    assert main([*base, "--neighbours", str(tmp_path / "none.csv"), *QUIET]) == 1
    assert "none.csv: no such manifest" in capsys.readouterr().err
    assert main([*base, "--split", "test", "--neighbours", str(shop), *QUIET]) == 0
    header = out.read_text().splitlines()[1]
    assert BLENDED in header
