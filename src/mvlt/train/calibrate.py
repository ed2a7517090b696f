"""The pass that ``--precision auto`` times for training on a CPU with native bf16.

``mvlt.runtime`` runs it in fp32 and in bf16 and keeps the faster (cached per machine and
workload shape): one micro-batch's forward and backward, exactly as the trainer runs them, on the
run's own model and first training items. It must leave no trace, so that a run that measured and
a run that read the cache train identically: gradients are cleared and the random streams (dropout)
and buffers (batch-norm statistics) are put back as they were.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from ..model.mvlt import MVLT
from ..model.objectives import LocalGather
from ..runtime import Precision, Workload
from .checkpoint import capture_rng, restore_rng


def training_workload(
    model: MVLT,
    dataset: Any,
    micro_batch: int,
    device: torch.device,
    weights: Mapping[str, float],
    forward_options: Mapping[str, Any],
) -> Workload:
    """One micro-batch of ``dataset``'s first items through ``model.forward_loss(batch,
    **forward_options)`` and back; ``weights`` combine the named losses as the trainer does."""
    names = [n for n, w in weights.items() if w]
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def batch() -> dict[str, torch.Tensor]:  # loaded on the first pass: a cache hit loads nothing
        if "batch" not in cache:
            items = dataset.collate([dataset[i] for i in range(min(micro_batch, len(dataset)))])
            cache["batch"] = {k: v.to(device) for k, v in items.items() if isinstance(v, torch.Tensor)}
        return cache["batch"]

    def run(precision: Precision) -> None:
        with untouched(model):
            with precision.autocast():
                parts = model(batch(), gather=LocalGather(), seed=0, **forward_options)
            sum(weights[n] * parts[n] for n in names).backward()

    config = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    shape = {
        "model": hashlib.sha256(config.encode()).hexdigest()[:12],
        "image_size": getattr(dataset, "image_size", None),
        "micro_batch": micro_batch,
        "objectives": ",".join(f"{n}={weights[n]:g}" for n in names),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        **{k: v for k, v in forward_options.items() if isinstance(v, (str, bool))},
    }
    return Workload("training", shape, run)


@contextmanager
def untouched(model: torch.nn.Module) -> Iterator[None]:
    """Run a pass whose only effect is the time it takes."""
    rng = capture_rng()
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        restore_rng(rng)
