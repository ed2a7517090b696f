"""How well zero-shot tags match a catalogue's own values: accuracy and macro-F1 per attribute,
beside the majority class (always predicting the split's most common value), which is what a
tagger has to beat before it tells anyone anything.

Labels match after case-folding and collapsing spaces (``"Dark Blue"`` is ``"dark blue"``). A
row whose value is empty, or is not among the labels offered (only possible with labels given by
hand), cannot be scored: it is left out of both scores and counted, as recognition does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..eval.recognition import classification_report


def metric_name(attribute: str, stat: str) -> str:
    """``tag_colour_acc_zeroshot``, ``tag_garment_group_items``...: one flat key per number."""
    slug = re.sub(r"[^0-9a-z]+", "_", attribute.casefold()).strip("_") or "attribute"
    return f"tag_{slug}_{stat}"


def _key(label: str) -> str:
    return " ".join(label.split()).casefold()


def score_attribute(
    attribute: str, predicted: Sequence[str], truth: Sequence[str], labels: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics of one attribute and its details (majority label, values not offered)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{attribute}: {len(predicted)} predictions for {len(truth)} rows")
    index = {_key(label): i for i, label in enumerate(labels)}
    y_true, y_pred, unknown = [], [], Counter()
    unlabelled = 0
    for p, t in zip(predicted, truth):
        if not t:
            unlabelled += 1
        elif _key(t) not in index:
            unknown[t] += 1
        else:
            y_true.append(index[_key(t)])
            y_pred.append(index[_key(p)])

    def name(stat: str) -> str:
        return metric_name(attribute, stat)

    metrics: dict[str, Any] = {
        name("items"): len(y_true),
        name("unlabelled_items"): unlabelled,
        name("unknown_items"): sum(unknown.values()),
        name("labels"): len(labels),
    }
    details: dict[str, Any] = {"unknown_values": dict(unknown.most_common())}
    if not y_true:
        return metrics, details
    zero_shot = classification_report(y_true, y_pred)
    majority = Counter(y_true).most_common(1)[0][0]
    baseline = classification_report(y_true, [majority] * len(y_true))
    metrics.update(
        {
            name("acc_zeroshot"): zero_shot.accuracy,
            name("macro_f1_zeroshot"): zero_shot.macro_f1,
            name("acc_majority"): baseline.accuracy,
            name("macro_f1_majority"): baseline.macro_f1,
        }
    )
    details["majority_label"] = labels[majority]
    return metrics, details


def score_tags(
    predicted: Mapping[str, Sequence[str]],
    truth: Mapping[str, Sequence[str]],
    labels: Mapping[str, Sequence[str]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`score_attribute` for every attribute of ``predicted`` (its top-1 label per row)."""
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for attribute, top1 in predicted.items():
        m, d = score_attribute(attribute, top1, truth[attribute], labels[attribute])
        metrics.update(m)
        details[attribute] = d
    return metrics, details
