"""Recognition heads fitted in closed form on the trained encoder (``TrainConfig.fit_heads``).

Minutes of fine-tuning leave the recognition heads far behind what the encoder's [CLS] can tell
apart: on our validation slice a sub-category head fine-tuned for 3 minutes scored 61.6 % where a
linear probe on the same model's [CLS] scored 77.7 % (docs/RESULTS.md). So, after the last step,
each head's output layer is fitted as a linear probe (:mod:`.linear_probe`): the training rows'
clean image-text pairs are encoded once, each head's hidden features (its Linear + LayerNorm on
the [CLS]) standardised, and one L2-regularised softmax regression fitted to convergence, its L2
strength chosen on held-out products. The standardisation is folded into the output layer, so a
checkpoint keeps its shape and everything that reads it is unchanged.

A model whose heads also read the ITC embeddings (``MVLTConfig.recognition_reads_itc``) has its
output layers fitted on both: the hidden features and the pairs' ITC embeddings side by side.

With ``teacher`` probabilities (``TrainConfig.fit_heads_teacher``), each row's target is its label
mixed with the teachers' out-of-fold probabilities: knowledge distillation into the read-out
(on the validation slice, 79.6 -> 82.0 % S-CR at weight 0.6 for a probe on [CLS]).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data.batches import PairDataset
from ..data.catalogue import Catalogue
from ..data.image_cache import ImageCache
from ..model.heads import ClsTokenHead
from ..model.mvlt import MVLT
from .linear_probe import choose, fit_probe, held_out

HEADS = ("category", "subcategory")


def recognition_heads(model: MVLT) -> dict[str, ClsTokenHead]:
    """The model's recognition heads by name (those it has)."""
    heads = {name: getattr(model, f"{name}_head") for name in HEADS}
    return {name: head for name, head in heads.items() if head is not None}


@torch.no_grad()
def head_features(
    model: MVLT,
    dataset: PairDataset,
    batch_size: int = 64,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per recognition head, ``N x hidden`` features of every clean pair of ``dataset`` (in row
    order) as its output layer reads them (with ``recognition_reads_itc``, the ITC embeddings
    too), and the rows' labels (-100: unknown)."""
    heads = recognition_heads(model)
    device = next(model.parameters()).device
    features: dict[str, list[torch.Tensor]] = {name: [] for name in heads}
    labels: dict[str, list[torch.Tensor]] = {name: [] for name in heads}
    was_training = model.training
    model.eval()
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate)
        for batch in loader:
            with autocast():
                inputs = tuple(batch[k].to(device) for k in ("images", "input_ids", "attention_mask"))
                cls, itc = model.forward_cls(*inputs), model.recognition_itc(*inputs)
            for name, head in heads.items():
                features[name].append(head.hidden(cls.float(), itc).float().cpu())
                labels[name].append(batch[f"{name}_labels"])
            if progress is not None:
                progress(len(batch["index"]))
    finally:
        model.train(was_training)
    return {n: torch.cat(f) for n, f in features.items()}, {n: torch.cat(y) for n, y in labels.items()}


@torch.no_grad()
def set_output_layer(
    head: ClsTokenHead, probe: torch.nn.Linear, mean: torch.Tensor, std: torch.Tensor
) -> None:
    """Make ``head``'s logits equal ``probe((h - mean) / std)`` on its hidden features ``h``."""
    weight = probe.weight / std
    head.fc.weight.copy_(weight.to(head.fc.weight))
    head.fc.bias.copy_((probe.bias - weight @ mean).to(head.fc.bias))
    if head.extra_bias is not None:
        head.extra_bias.zero_()


def fit_recognition_heads(
    model: MVLT,
    catalogue: Catalogue,
    image_size: int,
    resize: str = "pad",
    image_cache: ImageCache | None = None,
    batch_size: int = 64,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    progress: Callable[[int], None] | None = None,
    teacher: dict[str, torch.Tensor] | None = None,
    teacher_weight: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Fit every recognition head's output layer of ``model`` as a linear probe on ``catalogue``'s
    labelled rows (in place); returns per head the chosen L2 strength, the held-out accuracy that
    chose it and the accuracy of the fitted head on all labelled rows. ``teacher``: per head,
    ``N x classes`` probabilities of every row, mixed into the targets at ``teacher_weight``."""
    if teacher_weight and not teacher:
        raise ValueError("fit_heads: a teacher weight without the teachers' probabilities")
    heads = recognition_heads(model)
    if not heads:
        raise ValueError("fit_heads: the model has no recognition heads (category, subcategory)")
    dataset = PairDataset(
        catalogue, model.tokenizer, label_maps=model.label_maps, image_size=image_size, resize=resize,
        image_cache=image_cache,
    )  # fmt: skip
    features, labels = head_features(model, dataset, batch_size, autocast, progress)
    groups = list(getattr(catalogue, "groups", None) or catalogue.product_ids)
    records = {}
    for name, head in heads.items():
        known = labels[name] >= 0
        if int(known.sum()) == 0:
            raise ValueError(f"fit_heads: no training row has a known {name} label")
        x, y = features[name][known], labels[name][known]
        mean, std = x.mean(0), x.std(0) + 1e-6
        x = (x - mean) / std
        selection = held_out([g for g, k in zip(groups, known.tolist()) if k])
        targets = y
        if teacher_weight:
            soft = teacher[name][known].to(x)
            if soft.shape != (len(y), head.num_classes):
                raise ValueError(f"fit_heads: {name} teacher probabilities {tuple(soft.shape)} for "
                                 f"{len(y)} rows of {head.num_classes} classes")  # fmt: skip
            targets = (1 - teacher_weight) * F.one_hot(y, head.num_classes).to(x) + teacher_weight * soft
        l2, held_out_acc = choose(x, y, selection, head.num_classes, targets=targets)
        probe = fit_probe(x, targets, head.num_classes, l2)
        set_output_layer(head, probe, mean, std)
        with torch.no_grad():
            accuracy = float((probe(x).argmax(-1) == y).float().mean())
        records[name] = {"l2": l2, "held_out_acc": held_out_acc, "train_acc": accuracy}
    return records
