"""Main- and sub-category recognition (M-CR, S-CR): accuracy, macro-F1, SumC, per-class F1, confusions.

Macro-F1 follows scikit-learn's ``f1_score(average="macro")``: the mean of the per-class F1 over
the classes present in the truth *or* the predictions, a class's F1 being ``2TP / (2TP + FP + FN)``
(0 for a class that is only predicted or only true). SumC = (accuracy + macro-F1) x 100.

Evaluation labels are mapped through the checkpoint's label maps. A label the maps do not hold
(a class unseen in training) has no output unit, so no prediction can be right or wrong about it:
such items are **excluded** from accuracy and F1 and reported separately (count per label and
``*_unknown_items``), so the metric measures the classifier, and the report shows what the
checkpoint cannot cover. Counting them as errors would give ``acc x known / (known + unknown)``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import names
from .context import EvalContext

log = logging.getLogger("mvlt.eval")

FIELDS = ("category", "subcategory")


@dataclass
class ClassScores:
    """Per-class precision, recall, F1 and support (number of true items) for one class id."""

    label: int
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass
class ClassificationReport:
    """Metrics of one field (category or sub-category) over the items with a known label."""

    accuracy: float
    macro_f1: float
    labels: list[int]
    """The classes present in truth or prediction, ascending: the rows/columns of ``confusion``."""
    per_class: list[ClassScores]
    confusion: np.ndarray
    """``confusion[i, j]``: items of true class ``labels[i]`` predicted as ``labels[j]``."""
    items: int

    @property
    def sumc(self) -> float:
        return 100.0 * (self.accuracy + self.macro_f1)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        matrix[index[int(t)], index[int(p)]] += 1
    return matrix


def classification_report(y_true: Sequence[int], y_pred: Sequence[int]) -> ClassificationReport:
    """Accuracy, sklearn-style macro-F1, per-class scores and the confusion matrix."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items, y_pred {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no items with a known label to score")
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    labels = sorted(set(t.tolist()) | set(p.tolist()))
    matrix = confusion_matrix(t, p, labels)
    tp = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    fp, fn = predicted - tp, support - tp
    per_class = []
    for i, label in enumerate(labels):
        precision = tp[i] / predicted[i] if predicted[i] else 0.0
        recall = tp[i] / support[i] if support[i] else 0.0
        denom = 2 * tp[i] + fp[i] + fn[i]
        f1 = 2 * tp[i] / denom if denom else 0.0
        per_class.append(
            ClassScores(label, float(precision), float(recall), float(f1), int(support[i]), int(predicted[i]))
        )
    macro = float(np.mean([c.f1 for c in per_class]))
    return ClassificationReport(float(np.mean(t == p)), macro, labels, per_class, matrix, len(t))


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """scikit-learn's ``f1_score(y_true, y_pred, average="macro")``."""
    return classification_report(y_true, y_pred).macro_f1


@dataclass
class RecognitionOutcome:
    """Per field: the report (None when the model has no head for it), class names, unknown labels."""

    reports: dict[str, ClassificationReport | None]
    class_names: dict[str, list[str]]
    unknown: dict[str, Counter[str]]
    rows: list[int]
    predictions: dict[str, np.ndarray]
    """Predicted class id per evaluated row (all rows, known label or not)."""
    confidences: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    """True class id per row, -100 where the label is unknown to the checkpoint."""
    metrics: dict[str, float] = field(default_factory=dict)
    unlabelled: dict[str, int] = field(default_factory=dict)
    """Per field, the rows with an empty label: not scored either, and counted like unseen ones."""


def recognition_metrics(outcome: RecognitionOutcome) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in FIELDS:
        report = outcome.reports.get(f)
        if report is None:
            continue
        out[names.recognition(f, "acc")] = report.accuracy
        out[names.recognition(f, "macro_f1")] = report.macro_f1
        out[names.recognition(f, "sumc")] = report.sumc
        out[names.recognition(f, "items")] = report.items
        out[names.recognition(f, "unknown_items")] = sum(outcome.unknown[f].values())
        out[names.recognition(f, "unlabelled_items")] = outcome.unlabelled.get(f, 0)
    return out


def check_heads(model: Any) -> None:
    """Recognition needs the heads and the label maps they were trained with, of matching sizes."""
    config, maps = model.config, model.label_maps
    if not config.num_categories and not config.num_subcategories:
        raise ValueError("recognition needs a fine-tuned checkpoint: this one has no recognition heads")
    if maps is None:
        raise ValueError(
            "recognition needs the checkpoint's label maps (labels.json): this checkpoint has none"
        )
    for head, count in (
        ("num_categories", maps.num_categories),
        ("num_subcategories", maps.num_subcategories),
    ):
        size = getattr(config, head)
        if size and size != count:
            raise ValueError(f"checkpoint mismatch: {head}={size} but labels.json has {count} names")


def run_recognition(ctx: EvalContext, rows: Sequence[int]) -> RecognitionOutcome:
    """Classify the given catalogue rows (image + text) and score both heads."""
    model, maps, cat = ctx.model, ctx.model.label_maps, ctx.catalogue
    check_heads(model)
    rows = [int(r) for r in rows]
    maps.reset_counts()
    targets = {
        "category": np.array([maps.encode_category(cat.categories[r]) for r in rows], dtype=np.int64),
        "subcategory": np.array(
            [maps.encode_subcategory(cat.subcategories[r]) for r in rows], dtype=np.int64
        ),
    }
    unknown = {f: Counter(maps.unknown[f]) for f in FIELDS}
    unlabelled = {f: int(maps.unlabelled[f]) for f in FIELDS}
    maps.reset_counts()
    ctx.tokenize_rows(rows)
    preds: dict[str, list[torch.Tensor]] = {f: [] for f in FIELDS}
    confs: dict[str, list[torch.Tensor]] = {f: [] for f in FIELDS}
    for sl in tqdm(list(ctx.batches(len(rows))), desc="recognition", disable=not ctx.progress, leave=False):
        images, ids, mask = ctx.batch(rows[sl], rows[sl])
        with ctx.autocast():
            logits = model.classify(images, ids, mask)
        for f, value in zip(FIELDS, logits):
            if value is not None:
                prob = value.float().softmax(-1)
                conf, pred = prob.max(-1)
                preds[f].append(pred.cpu())
                confs[f].append(conf.cpu())
    reports: dict[str, ClassificationReport | None] = {}
    predictions, confidences = {}, {}
    for f in FIELDS:
        if not preds[f]:
            reports[f] = None
            continue
        predictions[f] = torch.cat(preds[f]).numpy()
        confidences[f] = torch.cat(confs[f]).numpy()
        known = targets[f] != -100
        if unknown[f]:
            log.warning(
                "%s: %d item(s) with labels unseen in training, excluded from the metrics: %s",
                f,
                int((~known).sum()),
                ", ".join(f"{n!r} x{c}" for n, c in sorted(unknown[f].items())),
            )
        if unlabelled[f]:
            log.warning("%s: %d item(s) without a label, excluded from the metrics", f, unlabelled[f])
        reports[f] = classification_report(targets[f][known], predictions[f][known]) if known.any() else None
    class_names = {"category": maps.category_names, "subcategory": maps.subcategory_names}
    outcome = RecognitionOutcome(
        reports, class_names, unknown, rows, predictions, confidences, targets, unlabelled=unlabelled
    )
    outcome.metrics = recognition_metrics(outcome)
    return outcome
