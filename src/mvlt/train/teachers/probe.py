"""Linear probes on the ImageNet teacher's pooled features: tagging's frozen reference
(``experiments/pretrained/tag_probe.py``) and, with ``--teachers tags``, soft targets for the
image tag heads (``kd_tags``).

A probe is one L2-regularised softmax regression per column on EfficientNet-Lite0's standardised
1280-d features (224 px, the teachers' cache), fitted full-batch with L-BFGS to convergence, as
CLIP's linear-probe protocol does. Its only setting, the L2 strength, is chosen on a held-out 15 %
of the products (a stable, salted hash of the product id: a slice independent of any val split the
catalogue was cut with by the plain hash, as ``docs/results/tagging/make_val_slice.py`` cuts it) from
``L2_GRID``, strongest first, each fit
warm-started from the last. As training targets, every row's probabilities come from a probe that
never saw that row (``folds``-fold cross-fitting, folds by product): a probe's output on its own
training rows is close to the labels it was fitted to and would teach nothing that the labels do
not. Rows without a label get the teacher's probabilities too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

L2_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4)
"""L2 strengths tried, strongest first (the penalty is ``l2 / 2 * |W|^2`` on the mean loss)."""
MAX_ITERATIONS = 500
PROBE_VERSION = 2
"""Part of the cache key of fitted probabilities: bump it when the probe's fit or selection changes."""
HELD_OUT_PERCENT = 15
FOLDS = 5
SALT = "mvlt-probe:"
"""Prefixed to product ids before hashing: a catalogue whose own val slice took the products with
the lowest plain SHA-1 buckets would otherwise leave the probe's held-out slice empty."""


def product_bucket(groups: Sequence[Any], buckets: int) -> torch.Tensor:
    """A stable bucket in ``[0, buckets)`` per row, from a salted hash of its product (group) id."""
    return torch.tensor([int(hashlib.sha1(f"{SALT}{g}".encode()).hexdigest(), 16) % buckets for g in groups])


def held_out(groups: Sequence[Any]) -> torch.Tensor:
    """True for the rows whose product falls in the held-out slice (``HELD_OUT_PERCENT`` %)."""
    return product_bucket(groups, 100) < HELD_OUT_PERCENT


def standardised(x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` with the mean and spread of ``reference`` (default ``x``) taken out, per feature."""
    reference = x if reference is None else reference
    return (x - reference.mean(0)) / (reference.std(0) + 1e-6)


def fit_probe(
    x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, start: torch.nn.Linear | None = None
) -> torch.nn.Linear:
    """The softmax regression minimising mean cross-entropy + ``l2 / 2 * |W|^2`` (bias free),
    full-batch L-BFGS from zero or from ``start``'s weights. Deterministic: no sampling."""
    probe = torch.nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        probe.weight.copy_(start.weight if start is not None else torch.zeros_like(probe.weight))
        probe.bias.copy_(start.bias if start is not None else torch.zeros_like(probe.bias))
    optimizer = torch.optim.LBFGS(
        probe.parameters(), lr=1.0, max_iter=MAX_ITERATIONS, history_size=20,
        tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(x), y) + 0.5 * l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return probe


def choose(x: torch.Tensor, y: torch.Tensor, val: torch.Tensor, classes: int) -> tuple[float, float]:
    """(L2 strength, held-out accuracy) of the best of ``L2_GRID`` on the held-out rows ``val``."""
    held = int(val.sum())
    if not 0 < held < len(val):
        raise ValueError(f"probe selection: {held} of {len(val)} rows held out; both sides need rows")
    best, probe = (L2_GRID[0], -1.0), None
    for l2 in L2_GRID:
        probe = fit_probe(x[~val], y[~val], classes, l2, start=probe)
        with torch.no_grad():
            acc = float((probe(x[val]).argmax(-1) == y[val]).float().mean())
        if acc > best[1]:
            best = (l2, acc)
    return best


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
