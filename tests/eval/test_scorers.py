"""The retrieval scorers: ITC from embeddings (one pass per row), ITM per pair, and ITC + ITM
re-ranking, run on the same candidate lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

import mvlt
from mvlt.eval import names
from mvlt.eval.retrieval import (
    RetrievalProtocol,
    reranked_scores,
    resolve_scorers,
    run_retrieval,
    shortlist,
)
from mvlt.model.config import PAPER_DESIGN

from .fakes import RowInputs, make_metadata

SIZES = {("Upper", "Top"): 40, ("Upper", "Shirt"): 25, ("Lower", "Trousers"): 30}


class RowEmbedder:
    """Embeddings that know their row: an image and a text of the same row have cosine 1, other
    pairs a cosine that depends on the rows; ``noisy`` rows are embedded as if they were row + 1,
    so ITC confuses them and an oracle ITM can repair the order."""

    def __init__(self, noisy: set[int] = frozenset()) -> None:
        self.noisy = noisy
        self.image_rows: list[int] = []
        self.text_rows: list[int] = []

    def _embed(self, rows: Sequence[int], shift: bool) -> torch.Tensor:
        angles = torch.tensor([float(r + (shift and r in self.noisy)) for r in rows]) * 0.01
        return torch.stack((angles.cos(), angles.sin()), dim=1)

    def images(self, rows: Sequence[int]) -> torch.Tensor:
        self.image_rows += list(rows)
        return self._embed(rows, shift=False)

    def texts(self, rows: Sequence[int]) -> torch.Tensor:
        self.text_rows += list(rows)
        return self._embed(rows, shift=True)


def oracle(images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    image_rows, text_rows = RowInputs.rows_of(images, input_ids)
    return (image_rows == text_rows).float()


def test_shortlist_puts_ties_before_the_positive() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    assert shortlist(scores, 0, 2).tolist() == [1, 2]
    assert shortlist(scores, 2, 3).tolist() == [1, 0, 2]


def test_reranked_scores_order_the_shortlist_by_the_second_scorer() -> None:
    first = np.array([0.9, 0.8, 0.7, 0.1])
    second = np.array([0.0, 5.0, -3.0, 99.0])  # the last is not in the shortlist: never read
    out = reranked_scores(first, second, np.array([0, 1, 2]))
    assert np.argsort(-out).tolist() == [1, 0, 2, 3]


def test_itc_itm_and_reranking_on_the_same_lists() -> None:
    meta = make_metadata(SIZES)
    embedder = RowEmbedder(noisy=set(range(0, 95, 3)))
    calls: list[int] = []

    def counting(images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(images.shape[0])
        return oracle(images, ids, mask)

    protocol = RetrievalProtocol(queries=40, negatives=20)
    out = run_retrieval(meta, RowInputs(), counting, protocol, scorers=("itc+itm", "itc"), embedder=embedder,
                        rerank_top=5)  # fmt: skip
    m = out.metrics
    # Each image and each text is embedded once, however many lists it is in.
    assert len(embedder.image_rows) == len(set(embedder.image_rows))
    assert len(embedder.text_rows) == len(set(embedder.text_rows))
    # ITM scored only the shortlists: at most 5 pairs per list and direction.
    assert 0 < sum(calls) <= 40 * 2 * 5
    for d in names.DIRECTIONS:
        itc, reranked = m[f"itc_{names.recall(d, 1, 20)}"], m[f"itc_itm_{names.recall(d, 1, 20)}"]
        assert itc < 1.0  # the noisy rows fool ITC
        assert reranked == 1.0  # the oracle re-ranker repairs every shortlist holding the positive
        assert m[names.recall(d, 1, 20)] == reranked  # the headline is the first scorer
    assert out.scorers == ("itc+itm", "itc")


def test_auto_runs_every_scorer_the_model_supports() -> None:
    assert resolve_scorers("auto", has_itc=True) == ("itc+itm", "itc", "itm")
    assert resolve_scorers("auto", has_itc=False) == ("itm",)
    assert resolve_scorers("itc, itm", has_itc=True) == ("itc", "itm")
    with pytest.raises(ValueError, match="has none"):
        resolve_scorers("itc", has_itc=False)
    with pytest.raises(ValueError, match="unknown scorer"):
        resolve_scorers("bm25", has_itc=True)


def test_evaluate_names_the_scorer_and_reports_each(tmp_path) -> None:
    from mvlt.data import open_catalogue
    from mvlt.eval import EvalOptions, evaluate

    torch.manual_seed(0)
    catalogue = open_catalogue("synthetic", split="test", num_products=120, image_size=64, seed=0)
    from mvlt.data import bert_tokenizer

    tokenizer = bert_tokenizer()
    options = EvalOptions(retrieval=RetrievalProtocol(queries=6, negatives=8), precision="fp32", rerank_top=3)
    model = mvlt.create_model("mvlt_nano", image_size=64)
    m = evaluate(model, catalogue, "retrieval", options, tmp_path, tokenizer=tokenizer)
    assert m["protocol"]["retrieval"]["score"] == "itc+itm"
    assert m["protocol"]["retrieval"]["scorers"] == ["itc+itm", "itc", "itm"]
    for tag in ("itc", "itm", "itc_itm"):
        assert f"{tag}_{names.recall('tir', 1, 8)}" in m
    assert m[names.recall("itr", 5, 8)] == m[f"itc_itm_{names.recall('itr', 5, 8)}"]
    assert "Every scorer on the same lists" in (tmp_path / "report.html").read_text()
    paper = mvlt.create_model("mvlt_nano", image_size=64, **PAPER_DESIGN)
    m = evaluate(paper, catalogue, "retrieval", options, tmp_path / "paper", tokenizer=tokenizer)
    assert m["protocol"]["retrieval"]["scorers"] == ["itm"]
