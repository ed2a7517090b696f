"""Texts in groups of similar length: the same features for a fraction of the padded work.

A batch of texts is padded to its longest. H&M descriptions run from 14 word-pieces to the cut at
128 (median 46), so a batch of 64 is padded to about 95 and half of every text-side matmul is spent on
[PAD]. Padding is a masked key, so a text's features do not depend on its batch: sorted by length
and cut into groups, each group padded only to its own longest, the text passes give the same
features (up to floating-point rounding) on 62 % of the tokens (58.8 a row instead of 95.0 with 4
groups; ``benchmarks/objective_cost.py --text-groups 1,4`` counts them and times the step).
Grouping is skipped while tracing or compiling (the groups depend on the data) and where the model
attends to padding (``mask_padding=False``, the released code), whose features do depend on it.
"""

from __future__ import annotations

from itertools import pairwise

import torch

MIN_ROWS = 4
"""Smallest group: below it, the smaller matmuls cost more than the padding they save."""
MIN_SAVING = 0.1
"""Group only when it saves at least this share of the padded text tokens."""


def length_groups(mask: torch.Tensor, groups: int) -> list[tuple[torch.Tensor, int]] | None:
    """``(rows, width)`` of each group of ``mask``'s rows (``B x L``, 1 = real token), sorted by
    length into ``groups`` groups of about equal size, ``width`` the group's longest extent; ``None``
    when grouping would not pay or must not run."""
    if _tracing():
        return None
    n, full = mask.shape
    count = min(groups, n // MIN_ROWS)
    if count < 2:
        return None
    positions = torch.arange(1, full + 1, device=mask.device)
    extent = (mask.to(torch.long) * positions).amax(1)  # one past the last real token
    order = torch.argsort(extent, stable=True)
    sorted_extent = extent[order].tolist()
    bounds = [round(i * n / count) for i in range(count + 1)]
    out = [(order[a:b], max(1, int(sorted_extent[b - 1]))) for a, b in pairwise(bounds)]
    padded = sum(len(rows) * width for rows, width in out)
    if padded > (1.0 - MIN_SAVING) * n * full:
        return None
    return out


def _tracing() -> bool:
    """Whether a tracer, exporter or compiler is reading the code (it would bake in one batch's groups)."""
    compiler = torch.compiler
    exporting = getattr(compiler, "is_exporting", lambda: False)()
    return bool(
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or compiler.is_compiling() or exporting
    )
