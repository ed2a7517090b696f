"""How well tags (fine-tuned heads, zero-shot; from the image alone or image + text) match a
catalogue's own values: accuracy and macro-F1 per attribute and scorer, beside the majority class
(always predicting the split's most common value), which is what a tagger has to beat before it
tells anyone anything.

Labels match after case-folding and collapsing spaces (``"Dark Blue"`` is ``"dark blue"``). A
row whose value is empty, or is not among the labels offered (only possible with labels given by
hand, or a value the heads never saw in training), cannot be scored: it is left out of every score
and counted, as recognition does. Every scorer is scored on the same rows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..eval.recognition import classification_report
from .tagger import IMAGE

CONFUSED_PAIRS = 5
"""Worst-confused (true, predicted) label pairs kept per attribute and scorer in the protocol."""
SMALL_ATTRIBUTE = 10
"""Attributes with at most this many labels also keep their whole confusion matrix."""


def metric_name(attribute: str, stat: str) -> str:
    """``tag_colour_acc_zeroshot``, ``tag_garment_group_items``...: one flat key per number."""
    slug = re.sub(r"[^0-9a-z]+", "_", attribute.casefold()).strip("_") or "attribute"
    return f"tag_{slug}_{stat}"


def _key(label: str) -> str:
    return " ".join(label.split()).casefold()


def scorer_name(source: str, mode: str = IMAGE) -> str:
    """A source read one way, as the protocol names it: ``fine-tuned`` (from the image alone, the
    default everywhere) or ``fine-tuned, image+text``."""
    return source if mode == IMAGE else f"{source}, {mode}"


def source_stat(scorer: str) -> str:
    """The suffix of a scorer's metrics: ``fine-tuned`` -> ``finetuned``, ``zero-shot`` ->
    ``zeroshot``, ``zero-shot, image+text`` -> ``zeroshot_image_text``."""
    source, _, mode = scorer.partition(", ")
    stat = re.sub(r"[^0-9a-z]+", "", source.casefold())
    return f"{stat}_{re.sub(r'[^0-9a-z]+', '_', mode.casefold()).strip('_')}" if mode else stat


def score_attribute(
    attribute: str,
    predicted: Mapping[str, Sequence[str]],
    truth: Sequence[str],
    labels: Sequence[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics of one attribute (``predicted``: per scorer (:func:`scorer_name`), the top
    label of every row; ``labels``: every label offered) and its details (majority label, values
    not offered, the worst-confused pairs and, for a small attribute, the confusion matrices)."""
    for scorer, top1 in predicted.items():
        if len(top1) != len(truth):
            raise ValueError(f"{attribute} ({scorer}): {len(top1)} predictions for {len(truth)} rows")
    unique: dict[str, str] = {}
    for label in labels:  # one label per spelling: a head's "Black" is a vocabulary's "black"
        unique.setdefault(_key(label), label)
    labels = list(unique.values())
    index = {_key(label): i for i, label in enumerate(labels)}
    scored, unknown = [], Counter()
    unlabelled = 0
    for row, t in enumerate(truth):
        if not t:
            unlabelled += 1
        elif _key(t) not in index:
            unknown[t] += 1
        else:
            scored.append(row)
    y_true = [index[_key(truth[r])] for r in scored]

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
    details["confused"], confusion = {}, {}
    for scorer, top1 in predicted.items():
        y_pred = [index[_key(top1[r])] for r in scored]
        report = classification_report(y_true, y_pred)
        metrics[name(f"acc_{source_stat(scorer)}")] = report.accuracy
        metrics[name(f"macro_f1_{source_stat(scorer)}")] = report.macro_f1
        pairs = Counter((t, p) for t, p in zip(y_true, y_pred) if t != p).most_common(CONFUSED_PAIRS)
        details["confused"][scorer] = [[labels[t], labels[p], n] for (t, p), n in pairs]
        if len(labels) <= SMALL_ATTRIBUTE:  # rows: true label, columns: predicted, in ``labels`` order
            counts = Counter(zip(y_true, y_pred))
            confusion[scorer] = [[counts[t, p] for p in range(len(labels))] for t in range(len(labels))]
    if confusion:
        details["confusion"] = {"labels": list(labels), **confusion}
    majority = Counter(y_true).most_common(1)[0][0]
    baseline = classification_report(y_true, [majority] * len(y_true))
    metrics[name("acc_majority")], metrics[name("macro_f1_majority")] = baseline.accuracy, baseline.macro_f1
    details["majority_label"] = labels[majority]
    return metrics, details


def score_tags(
    predicted: Mapping[str, Mapping[str, Sequence[str]]],
    truth: Mapping[str, Sequence[str]],
    labels: Mapping[str, Sequence[str]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`score_attribute` for every attribute of ``predicted`` (per scorer, its top-1 label
    per row)."""
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for attribute, top1 in predicted.items():
        m, d = score_attribute(attribute, top1, truth[attribute], labels[attribute])
        metrics.update(m)
        details[attribute] = d
    return metrics, details
