"""Scoring tags against a catalogue's values: accuracy, macro-F1, the majority class, rows left out."""

from __future__ import annotations

import pytest

from mvlt.tagging import metric_name, score_attribute, score_tags


def test_accuracy_macro_f1_and_the_majority_class() -> None:
    labels = ["Black", "White", "Dark Blue"]
    truth = ["black", "Black", "White", "dark  blue", "", "Pink"]
    predicted = ["Black", "White", "White", "Dark Blue", "Black", "Black"]
    metrics, details = score_attribute("colour", {"zero-shot": predicted}, truth, labels)
    assert metrics["tag_colour_items"] == 4  # the empty value and the label not offered are left out
    assert metrics["tag_colour_unlabelled_items"] == 1 and metrics["tag_colour_unknown_items"] == 1
    assert metrics["tag_colour_acc_zeroshot"] == pytest.approx(3 / 4)
    # F1: black 2/3 (1 TP, 1 FN), white 2/3 (1 TP, 1 FP), dark blue 1
    assert metrics["tag_colour_macro_f1_zeroshot"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert metrics["tag_colour_acc_majority"] == pytest.approx(2 / 4)
    # always Black: black F1 = 2*2/(4+2) = 2/3, white 0, dark blue 0
    assert metrics["tag_colour_macro_f1_majority"] == pytest.approx((2 / 3) / 3)
    assert details["unknown_values"] == {"Pink": 1} and details["majority_label"] == "Black"
    assert details["confused"] == {"zero-shot": [["Black", "White", 1]]}  # worst-confused pairs, with counts
    assert details["confusion"] == {"labels": labels, "zero-shot": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]}
    assert metrics["tag_colour_labels"] == 3


def test_names_and_attributes_without_scored_rows() -> None:
    assert metric_name("Garment group", "acc_zeroshot") == "tag_garment_group_acc_zeroshot"
    metrics, _ = score_tags(
        {"pattern": {"zero-shot": ["solid", "dots"]}}, {"pattern": ["", ""]}, {"pattern": ["solid", "dots"]}
    )
    assert metrics["tag_pattern_items"] == 0 and "tag_pattern_acc_zeroshot" not in metrics
