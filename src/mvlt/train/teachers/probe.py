"""Linear probes on the ImageNet teacher's pooled features: tagging's frozen reference
(``experiments/pretrained/tag_probe.py``) and, with ``--teachers tags``, soft targets for the
image tag heads (``kd_tags``).

A probe is one softmax regression per column on EfficientNet-Lite0's standardised 1280-d features
(224 px, the teachers' cache). Its epochs and weight decay are chosen on a held-out 15 % of the
products (a stable hash of the product id). As training targets, every row's probabilities come
from a probe that never saw that row (``folds``-fold cross-fitting, folds by product): a probe's
output on its own training rows is close to the labels it was fitted to and would teach nothing
that the labels do not. Rows without a label get the teacher's probabilities too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

EPOCHS = (5, 10, 20, 40, 80)
WEIGHT_DECAYS = (1e-4, 1e-2, 1e-1)
HELD_OUT_PERCENT = 15
FOLDS = 5


def product_bucket(groups: Sequence[Any], buckets: int) -> torch.Tensor:
    """A stable bucket in ``[0, buckets)`` per row, from a hash of its product (group) id."""
    return torch.tensor([int(hashlib.sha1(str(g).encode()).hexdigest(), 16) % buckets for g in groups])


def held_out(groups: Sequence[Any]) -> torch.Tensor:
    """True for the rows whose product falls in the held-out slice (``HELD_OUT_PERCENT`` %)."""
    return product_bucket(groups, 100) < HELD_OUT_PERCENT


def standardised(x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` with the mean and spread of ``reference`` (default ``x``) taken out, per feature."""
    reference = x if reference is None else reference
    return (x - reference.mean(0)) / (reference.std(0) + 1e-6)


def fit_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    classes: int,
    epochs: int,
    weight_decay: float,
    seed: int,
    checkpoints: tuple[int, ...] = (),
) -> dict[int, torch.nn.Linear]:
    """A softmax regression trained ``epochs`` epochs (AdamW, lr 1e-3, batches of 256); with
    ``checkpoints``, a copy after each of those epochs as well."""
    generator = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(x.shape[1], classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=weight_decay)
    kept = {}
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 256):
            rows = order[start : start + 256]
            loss = F.cross_entropy(probe(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch in checkpoints or epoch == epochs:
            copy = torch.nn.Linear(x.shape[1], classes)
            copy.load_state_dict(probe.state_dict())
            kept[epoch] = copy
    return kept


def choose(
    x: torch.Tensor, y: torch.Tensor, val: torch.Tensor, classes: int, seed: int
) -> tuple[int, float, float]:
    """(epochs, weight decay, held-out accuracy) of the best setting on the held-out rows ``val``."""
    best = (EPOCHS[0], WEIGHT_DECAYS[0], -1.0)
    for wd in WEIGHT_DECAYS:
        probes = fit_probe(x[~val], y[~val], classes, max(EPOCHS), wd, seed, checkpoints=EPOCHS)
        for epochs, probe in probes.items():
            with torch.no_grad():
                acc = float((probe(x[val]).argmax(-1) == y[val]).float().mean())
            if acc > best[2]:
                best = (epochs, wd, acc)
    return best


def out_of_fold_probabilities(
    x: torch.Tensor, y: torch.Tensor, classes: int, groups: Sequence[Any], seed: int, folds: int = FOLDS
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``N x classes`` probabilities of every row of ``x`` from a probe fitted on the other folds'
    labelled rows (``y`` < 0: no label; such rows are predicted, never fitted); and a record of
    the chosen setting with the out-of-fold accuracy on the labelled rows."""
    if folds < 2:
        raise ValueError(f"out_of_fold_probabilities: folds must be at least 2, got {folds}")
    x = standardised(x)
    known = y >= 0
    if int(known.sum()) < folds:
        raise ValueError(f"out_of_fold_probabilities: {int(known.sum())} labelled rows for {folds} folds")
    epochs, wd, held_out_acc = choose(x[known], y[known], held_out([g for g, k in zip(groups, known) if k]),
                                      classes, seed)  # fmt: skip
    fold = product_bucket(groups, folds)
    probabilities = torch.zeros(len(x), classes)
    for k in range(folds):
        fit = known & (fold != k)
        probe = fit_probe(x[fit], y[fit], classes, epochs, wd, seed)[epochs]
        with torch.no_grad():
            probabilities[fold == k] = probe(x[fold == k]).softmax(-1)
    accuracy = float((probabilities[known].argmax(-1) == y[known]).float().mean())
    record = {"epochs": epochs, "weight_decay": wd, "held_out_acc": held_out_acc, "out_of_fold_acc": accuracy}
    return probabilities, record
