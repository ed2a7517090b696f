"""Linear probes: one L2-regularised softmax regression on frozen features, its L2 strength chosen
on held-out products. CLIP's linear-probe protocol, used for the tag teachers' soft targets
(:mod:`.teachers.probe`), tagging's frozen reference (``experiments/pretrained/tag_probe.py``) and
the recognition heads' closed-form fit (:mod:`.head_fit`).

The fit is full-batch L-BFGS to convergence (deterministic: no sampling). The held-out slice is a
stable, salted hash of the product id, a slice independent of any val split the catalogue was cut
with by the plain hash (as ``docs/results/tagging/make_val_slice.py`` cuts it).
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
HELD_OUT_PERCENT = 15
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
    full-batch L-BFGS from zero or from ``start``'s weights. Deterministic: no sampling.
    ``y`` is a class index per row, or an ``N x classes`` distribution per row (soft targets)."""
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


def choose(
    x: torch.Tensor, y: torch.Tensor, val: torch.Tensor, classes: int, targets: torch.Tensor | None = None
) -> tuple[float, float]:
    """(L2 strength, held-out accuracy) of the best of ``L2_GRID`` on the held-out rows ``val``:
    each probe fitted to ``targets`` (default the labels ``y``), scored against ``y``."""
    held = int(val.sum())
    if not 0 < held < len(val):
        raise ValueError(f"probe selection: {held} of {len(val)} rows held out; both sides need rows")
    targets = y if targets is None else targets
    best, probe = (L2_GRID[0], -1.0), None
    for l2 in L2_GRID:
        probe = fit_probe(x[~val], targets[~val], classes, l2, start=probe)
        with torch.no_grad():
            acc = float((probe(x[val]).argmax(-1) == y[val]).float().mean())
        if acc > best[1]:
            best = (l2, acc)
    return best
