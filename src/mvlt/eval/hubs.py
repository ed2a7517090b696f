"""Hubs corrected at inference: candidates that sit close to every query lose their head start.

In a learned embedding space some items are *hubs*: near to most queries, they win lists they do
not belong to. QB-Norm (Bogolin et al. 2022) and the inverted softmax (Smith et al. 2017) correct
for it with a bank of queries taken elsewhere: each candidate's score is its cosine minus its pull
on the bank, ``tau * logsumexp_b(cos(candidate, b) / tau)`` at the model's ITC temperature. For
text-to-image retrieval the candidates are photos and the bank holds texts; for image-to-text the
mirror. The bank comes from the training split, so it never holds an evaluated product, and
the correction needs nothing but the model: one pass over the bank per evaluation.

Measured on the H&M validation slice with the photo also embedded as its mirror image
(``EvalOptions.mirror``): +2.8 / +1.1 R@5 on the model it was chosen on, +2.0 / +3.9 on a second
(docs/RESULTS.md, fourteenth session; ``experiments/pretrained/rescoring.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import names
from .retrieval import CandidateSet, pair_keys
from .scoring import Embedder


def bank_pull(items: torch.Tensor, bank: torch.Tensor, temperature: float) -> torch.Tensor:
    """``temperature * logsumexp_b(items @ bank.T / temperature)``: each item's pull on the bank,
    in cosine units (``items`` and ``bank`` are unit embeddings, ``N x D`` and ``M x D``)."""
    if temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    logits = items.double() @ bank.double().t() / temperature
    return temperature * torch.logsumexp(logits, dim=1)


def candidate_offsets(
    cset: CandidateSet,
    embedder: Embedder,
    bank: Embedder,
    bank_rows: Sequence[int],
    temperature: float,
    directions: Sequence[str] = names.DIRECTIONS,
) -> dict[str, dict[int, float]]:
    """What to subtract from each candidate's ITC cosine, per direction: ``tir`` by candidate
    image row (its pull on the bank's texts), ``itr`` by candidate text row (on the bank's
    photos). ``bank`` embeds rows of the bank catalogue, ``bank_rows`` which of them."""
    rows = list(bank_rows)
    wanted = {"tir": set(), "itr": set()}
    for queries in cset.repeats:
        for c in queries:
            for d in directions:
                side = 0 if d == "tir" else 1
                wanted[d].update(key[side] for key in pair_keys(c, d))
    offsets: dict[str, dict[int, float]] = {}
    for d in directions:
        if not wanted[d]:
            continue
        items = sorted(wanted[d])
        if d == "tir":
            pull = bank_pull(embedder.images(items), bank.texts(rows), temperature)
        else:
            pull = bank_pull(embedder.texts(items), bank.images(rows), temperature)
        offsets[d] = dict(zip(items, pull.tolist()))
    return offsets
