"""Zero-shot tags: the ITC softmax over each attribute's labels, with the model's own temperature."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.data import bert_tokenizer, encode_texts
from mvlt.tagging import ZeroShotTagger, zero_shot_tags

VOCABULARY = {"colour": ["black", "white", "red", "blue"], "pattern": ["solid", "striped"]}


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> mvlt.MVLT:
    return mvlt.MVLT.from_pretrained(checkpoint).eval()


def test_tags_are_the_itc_softmax_over_each_attributes_labels(model: mvlt.MVLT) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tags = zero_shot_tags(model, images, VOCABULARY, top_k=3)
    assert len(tags) == 3 and all(len(t["colour"]) == 3 and len(t["pattern"]) == 2 for t in tags)
    with torch.inference_mode():
        batch = encode_texts(model.tokenizer, VOCABULARY["colour"])
        labels = model.encode_texts(batch["input_ids"], batch["attention_mask"])
        photos = model.encode_images(images)
        expected = (photos @ labels.T / float(model.itc_head.clamped_temperature())).softmax(-1)
    for row, probs in zip(tags, expected):
        order = probs.argsort(descending=True)[:3].tolist()
        assert [t.label for t in row["colour"]] == [VOCABULARY["colour"][i] for i in order]
        assert [t.probability for t in row["colour"]] == pytest.approx(probs[order].tolist(), abs=1e-5)
        assert row["pattern"][0].probability >= row["pattern"][1].probability
    assert tags[0]["colour"][0].to_dict().keys() == {"label", "probability"}


def test_temperature_and_prompt_template(model: mvlt.MVLT) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tagger = ZeroShotTagger(model, VOCABULARY)
    assert tagger.temperature == pytest.approx(float(model.itc_head.clamped_temperature().detach()))
    sharp = tagger.probabilities(images)["colour"]
    assert torch.allclose(sharp.sum(-1), torch.ones(2))
    flat = ZeroShotTagger(model, VOCABULARY, temperature=100.0).probabilities(images)["colour"]
    assert (flat.max(-1).values < sharp.max(-1).values).all()  # hotter: closer to uniform
    prompted = ZeroShotTagger(model, VOCABULARY, template="a photo of a {label} garment")
    assert not torch.allclose(prompted.label_embeddings["colour"], tagger.label_embeddings["colour"])
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        tagger.tag(images, 0)


def test_a_checkpoint_without_itc_heads_cannot_tag() -> None:
    model = mvlt.create_model("mvlt_nano", image_size=32, contrastive_dim=0, max_text_len=48)
    model.tokenizer = bert_tokenizer(max_length=48)
    with pytest.raises(ValueError, match="no ITC heads"):
        zero_shot_tags(model, torch.rand(1, 3, 32, 32), VOCABULARY)


def test_nothing_below_imports_tagging() -> None:
    code = (
        "import sys, mvlt, mvlt.data, mvlt.model, mvlt.eval, mvlt.train, mvlt.search; "
        "print(sorted(m for m in sys.modules if m.startswith('mvlt.tagging')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
