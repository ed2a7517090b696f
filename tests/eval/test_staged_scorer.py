"""The staged ITM scorer of a late-fusion model: the scores of ``match_score`` on every pair, with
one unimodal pass per image and per text instead of one whole pass per pair."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

import mvlt
from mvlt.eval.scoring import model_scorer, score_pairs, staged_pair_scorer


class ItemInputs:
    """Images and texts of catalogue rows (random pixels, texts of 4 to 10 tokens), counting the
    images asked for."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.images_made = 0

    def image(self, row: int) -> torch.Tensor:
        return torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(row))

    def token_ids(self, row: int) -> list[int]:
        g = torch.Generator().manual_seed(1000 + row)
        return [101, *torch.randint(1000, 30000, (2 + row % 7,), generator=g).tolist(), 102]

    def images(self, rows: Sequence[int]) -> torch.Tensor:
        self.images_made += len(rows)
        return torch.stack([self.image(r) for r in rows])

    def text_batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.token_ids(r) for r in rows]
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        return ids, mask

    def batch(self, image_rows: Sequence[int], text_rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
        return (torch.stack([self.image(r) for r in image_rows]), *self.text_batch(text_rows))


@pytest.mark.parametrize("fusion_stage", [4, 2])
def test_staged_scores_are_match_scores(fusion_stage: int) -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", fusion_stage=fusion_stage).eval()
    g = torch.Generator().manual_seed(0)
    pairs = sorted({(int(i), int(t)) for i, t in torch.randint(0, 12, (40, 2), generator=g)})
    inputs = ItemInputs()
    with torch.no_grad():
        expected = score_pairs(pairs, inputs, model_scorer(model), batch_size=5)
    staged = staged_pair_scorer(model, inputs, batch_size=7, cached_texts=2)  # texts evicted and re-made
    got = staged(reversed(pairs))
    assert got.keys() == expected.keys()
    torch.testing.assert_close(
        torch.tensor([got[p] for p in pairs]),
        torch.tensor([expected[p] for p in pairs]),
        rtol=1e-4,
        atol=1e-4,
    )
    # Pairs go in image order: an image is encoded once, or twice when its pairs straddle two batches.
    chunks = -(-len(pairs) // 7)
    assert inputs.images_made <= len({i for i, _ in pairs}) + chunks - 1
