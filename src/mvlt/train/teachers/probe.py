"""Soft targets for the image tag heads (``--teachers tags``, ``kd_tags``): linear probes
(:mod:`..linear_probe`) on EfficientNet-Lite0's standardised 1280-d pooled features (224 px, the
teachers' cache), one per tag column.

As training targets, every row's probabilities come from a probe that never saw that row
(``folds``-fold cross-fitting, folds by product): a probe's output on its own training rows is
close to the labels it was fitted to and would teach nothing that the labels do not. Rows without
a label get the teacher's probabilities too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..linear_probe import choose, fit_probe, held_out, product_bucket, standardised

PROBE_VERSION = 2
"""Part of the cache key of fitted probabilities: bump it when the probe's fit or selection changes."""
FOLDS = 5


def out_of_fold_probabilities(
    x: torch.Tensor, y: torch.Tensor, classes: int, groups: Sequence[Any], folds: int = FOLDS
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``N x classes`` probabilities of every row of ``x`` from a probe fitted on the other folds'
    labelled rows (``y`` < 0: no label; such rows are predicted, never fitted); and a record of
    the chosen L2 strength with the out-of-fold accuracy on the labelled rows."""
    if folds < 2:
        raise ValueError(f"out_of_fold_probabilities: folds must be at least 2, got {folds}")
    x = standardised(x)
    known = y >= 0
    if int(known.sum()) < folds:
        raise ValueError(f"out_of_fold_probabilities: {int(known.sum())} labelled rows for {folds} folds")
    l2, held_out_acc = choose(x[known], y[known], held_out([g for g, k in zip(groups, known) if k]), classes)
    fold = product_bucket(groups, folds)
    probabilities = torch.zeros(len(x), classes)
    for k in range(folds):
        fit = known & (fold != k)
        probe = fit_probe(x[fit], y[fit], classes, l2)
        with torch.no_grad():
            probabilities[fold == k] = probe(x[fold == k]).softmax(-1)
    accuracy = float((probabilities[known].argmax(-1) == y[known]).float().mean())
    record = {"l2": l2, "held_out_acc": held_out_acc, "out_of_fold_acc": accuracy}
    return probabilities, record
