"""Recognition metrics: accuracy, scikit-learn's macro-F1, per-class scores, confusions, unseen labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mvlt
from mvlt.data.labels import LabelMaps
from mvlt.eval.context import EvalContext
from mvlt.eval.recognition import (
    check_heads,
    classification_report,
    confusion_matrix,
    macro_f1,
    run_recognition,
)


def reference_macro_f1(y_true: list[int], y_pred: list[int]) -> float:
    """F1 = 2PR / (P + R) per class over the union of true and predicted classes (0 when P + R = 0)."""
    scores = []
    for c in sorted(set(y_true) | set(y_pred)):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        predicted, actual = y_pred.count(c), y_true.count(c)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(scores))


def test_macro_f1_counts_a_class_present_only_in_predictions() -> None:
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 3]
    # class 0: F1 2/3; class 1: 4/5; class 2 (never predicted): 0; class 3 (never true): 0.
    rep = classification_report(y_true, y_pred)
    assert rep.labels == [0, 1, 2, 3]
    assert rep.macro_f1 == pytest.approx((2 / 3 + 0.8) / 4)
    assert rep.accuracy == pytest.approx(0.6)
    assert rep.sumc == pytest.approx(100 * (0.6 + (2 / 3 + 0.8) / 4))
    by_label = {c.label: c for c in rep.per_class}
    assert by_label[3].f1 == 0.0 and by_label[3].support == 0 and by_label[3].predicted == 1
    assert by_label[1].precision == pytest.approx(2 / 3) and by_label[1].recall == 1.0


def test_macro_f1_matches_the_sklearn_docstring_example() -> None:
    # sklearn.metrics.f1_score docs: f1_score([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1], average="macro")
    assert macro_f1([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1]) == pytest.approx(0.26666666666666666)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_a_reference_on_random_cases(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, 40).tolist()
    y_pred = np.where(rng.random(40) < 0.5, y_true, rng.integers(0, 9, 40)).tolist()
    assert macro_f1(y_true, y_pred) == pytest.approx(reference_macro_f1(y_true, y_pred))


def test_edge_cases() -> None:
    assert macro_f1([1, 2, 3], [1, 2, 3]) == 1.0
    assert macro_f1([1, 1], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="no items"):
        classification_report([], [])


def test_confusion_matrix_rows_are_truth() -> None:
    m = confusion_matrix([0, 0, 1, 2], [0, 2, 1, 2], labels=[0, 1, 2])
    assert m.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]


# ------------------------------------------------------------------------------- with a model
class TinyTokenizer:
    pad_id, sep_id = 0, 102

    def encode_batch(self, texts):
        return [[101, *(1000 + (ord(ch) % 50) for ch in t[:6]), 102] for t in texts]


class TinyCatalogue:
    def __init__(self, categories, subcategories):
        self.categories, self.subcategories = categories, subcategories
        self.texts = [f"item {i}" for i in range(len(categories))]

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        class Item:
            image = Image.new("RGB", (40, 30), (i * 20, 100, 50))

        return Item()


def test_unseen_labels_are_excluded_and_counted() -> None:
    maps = LabelMaps.build(["Shoes", "Tops"], ["Boot", "Shirt", "Tee"])
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=32, num_categories=2, num_subcategories=3).eval()
    model.label_maps = maps
    cat = TinyCatalogue(["Shoes", "Tops", "Tops", "Hats", "Tops"], ["Boot", "Shirt", "Tee", "Cap", "Vest"])
    ctx = EvalContext(model, cat, TinyTokenizer(), torch.device("cpu"), image_size=32, batch_size=2)
    with torch.inference_mode():
        out = run_recognition(ctx, range(5))
    assert out.unknown["category"] == {"Hats": 1}
    assert out.unknown["subcategory"] == {"Cap": 1, "Vest": 1}
    assert out.metrics["mcr_items"] == 4 and out.metrics["mcr_unknown_items"] == 1
    assert out.metrics["scr_items"] == 3 and out.metrics["scr_unknown_items"] == 2
    assert out.targets["subcategory"].tolist() == [0, 1, 2, -100, -100]
    assert len(out.predictions["category"]) == 5
    assert maps.unknown["category"] == {}  # the model's maps are left clean


def test_check_heads_explains_what_is_missing() -> None:
    model = mvlt.create_model("mvlt_nano", image_size=32)
    with pytest.raises(ValueError, match="no recognition heads"):
        check_heads(model)
    model = mvlt.create_model("mvlt_nano", image_size=32, num_subcategories=1)
    with pytest.raises(ValueError, match=r"label maps \(labels.json\)"):
        check_heads(model)
    model = mvlt.create_model("mvlt_nano", image_size=32, num_categories=3)
    model.label_maps = LabelMaps.build(["a"], ["b"])
    with pytest.raises(ValueError, match=r"num_categories=3 but labels\.json has 1"):
        check_heads(model)
