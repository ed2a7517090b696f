"""Fakes shared by the evaluation tests: metadata lists, model inputs that encode their row, scorers."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class RowInputs:
    """Model inputs that carry their catalogue row: image pixels hold the row, so does ``input_ids[:, 1]``.

    Lets a fake scorer know which image and which text it sees, without a model.
    """

    TEXT_OFFSET = 1000

    def __init__(self, size: int = 4) -> None:
        self.size = size

    def token_ids(self, row: int) -> list[int]:
        return [101, self.TEXT_OFFSET + row, *([2000] * (row % 3)), 102]

    def batch(self, image_rows: Sequence[int], text_rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
        images = (
            torch.tensor(image_rows, dtype=torch.float32)
            .view(-1, 1, 1, 1)
            .expand(-1, 3, self.size, self.size)
        )
        seqs = [self.token_ids(r) for r in text_rows]
        length = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return images, ids, mask

    @staticmethod
    def rows_of(images: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images[:, 0, 0, 0].long(), input_ids[:, 1] - RowInputs.TEXT_OFFSET


class Metadata:
    """Plain metadata lists, the part of a catalogue retrieval sampling reads."""

    def __init__(
        self,
        product_ids: Sequence[str],
        texts: Sequence[str],
        subcategories: Sequence[str],
        categories: Sequence[str],
    ) -> None:
        self.product_ids, self.texts = list(product_ids), list(texts)
        self.subcategories, self.categories = list(subcategories), list(categories)

    def __len__(self) -> int:
        return len(self.texts)


def make_metadata(sizes: dict[tuple[str, str], int], duplicate_every: int = 0) -> Metadata:
    """``sizes[(category, subcategory)]`` products each; every ``duplicate_every``-th product copies the
    previous product's text (H&M colour variants with one description)."""
    pids, texts, subs, cats = [], [], [], []
    for (cat, sub), n in sizes.items():
        for i in range(n):
            idx = len(pids)
            pids.append(f"p{idx:05d}")
            dup = duplicate_every and i and i % duplicate_every == 0
            texts.append(texts[-1].upper() if dup else f"{sub} number {i}, a fine {cat.lower()} item")
            subs.append(sub)
            cats.append(cat)
    return Metadata(pids, texts, subs, cats)
