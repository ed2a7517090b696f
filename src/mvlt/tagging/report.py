"""``report.html`` of a tagging evaluation, on ``mvlt evaluate``'s report machinery (its page, tables
and confusion-matrix drawing): per attribute a table of every scorer (fine-tuned and zero-shot,
image only and image + text) beside the majority class, then the confusion matrices of a small
attribute or the worst-confused pairs of a large one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..eval.report import data_uri, draw_confusion, esc, page, table
from .evaluate import SMALL_ATTRIBUTE, metric_name, source_stat


def render_tagging_report(metrics: dict[str, Any], protocol: dict[str, Any]) -> str:
    """The whole page as one string (no external resources)."""
    modes = protocol["modes"]
    header = table(
        ["", ""],
        [
            ["checkpoint", f"<code>{esc(protocol['checkpoint'])}</code>"],
            [
                "catalogue",
                f"<code>{esc(protocol['catalogue'])}</code>, split {esc(protocol['split'])} "
                f"({protocol['photos']} photos)",
            ],
            ["image size / precision", f"{protocol['image_size']} px / {esc(protocol['precision'])}"],
            ["image only (the number to quote)", esc(modes["image"])],
            ["image + text", esc(modes["image+text"])],
            [
                "zero-shot prompt / temperature",
                f"{esc(protocol['prompt'])} / {_number(protocol['temperature'])}",
            ],
            ["skipped photos", esc(", ".join(f"{k}: {v}" for k, v in protocol["skipped"].items()) or "none")],
        ],
    )
    words = (
        "<p>Each attribute's top label is scored against the catalogue's column of the same name: "
        f"accuracy and macro-F1 (scikit-learn's), beside the majority class ({esc(protocol['majority'])}). "
        f"Labels match {esc(protocol['matching'])}. Every scorer is scored on the same rows.</p>"
    )
    sections = [_attribute(a, d, metrics) for a, d in protocol["attributes"].items()]
    return page("MVLT tagging evaluation", header + words + "\n".join(sections))


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _attribute(attribute: str, details: dict[str, Any], metrics: dict[str, Any]) -> str:
    """One attribute: its scores, then its confusion matrices (small) or worst-confused pairs."""

    def get(stat: str) -> Any:
        return metrics.get(metric_name(attribute, stat))

    unknown = details.get("unknown_values") or {}
    counts = (
        f"{get('labels')} labels; {get('items')} rows scored, {get('unlabelled_items')} without a value "
        f"and {get('unknown_items')} with a value no scorer offers left out"
        + (f" ({esc(', '.join(f'{k} × {v}' for k, v in list(unknown.items())[:5]))})" if unknown else "")
    )
    html_ = [f"<h2>{esc(attribute)}</h2>", f"<p class='note'>{counts}.</p>"]
    confused = details.get("confused")
    if not confused:
        return "\n".join(html_)
    rows = [
        [esc(scorer), 100 * get(f"acc_{source_stat(scorer)}"), get(f"macro_f1_{source_stat(scorer)}")]
        for scorer in confused
    ]
    rows.append([f"majority class ({esc(details['majority_label'])})", 100 * get("acc_majority"),
                 get("macro_f1_majority")])  # fmt: skip
    html_.append(table(["scorer", "accuracy %", "macro-F1"], rows, digits=[0, 1, 3]))
    confusion = details.get("confusion")
    if confusion is not None:
        labels = confusion["labels"]
        html_.append(
            f"<p class='note'>At most {SMALL_ATTRIBUTE} labels: the whole confusion matrix per scorer. "
            "Rows: true label; columns: predicted; shade: share of the row; the diagonal is outlined.</p>"
        )
        for scorer in confused:
            picture = data_uri(draw_confusion(np.array(confusion[scorer]), labels), max_side=None, fmt="PNG")
            html_.append(f"<h3>{esc(scorer)}</h3><img src='{picture}' alt='confusion matrix, {esc(scorer)}'>")
        return "\n".join(html_)
    html_.append(
        f"<p class='note'>More than {SMALL_ATTRIBUTE} labels: the worst-confused (true, predicted) pairs "
        "per scorer, with the rows they cost.</p>"
    )
    for scorer, pairs in confused.items():
        body = [[esc(true), esc(predicted), n] for true, predicted, n in pairs]
        html_.append(f"<h3>{esc(scorer)}</h3>")
        html_.append(
            table(["true", "predicted", "rows"], body, digits=[0, 0, 0]) if body else "<p>no confusions</p>"
        )
    return "\n".join(html_)
