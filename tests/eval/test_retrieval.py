"""The 1 + K retrieval protocol: candidate sampling, the file round trip, tie rules, metrics, and the
sanity checks every evaluator must pass (oracle = 1, constant = 0, random init = chance)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import mvlt
from mvlt.eval import names
from mvlt.eval.retrieval import (
    CandidateSet,
    RetrievalProtocol,
    load_candidates,
    normalise_text,
    positive_rank,
    recall_metrics,
    resolve_candidates,
    run_retrieval,
    sample_candidates,
    save_candidates,
)
from mvlt.eval.scoring import model_scorer

from .fakes import Metadata, RowInputs, make_metadata

SIZES = {
    ("Upper", "Top"): 40,
    ("Upper", "Shirt"): 12,
    ("Upper", "Vest"): 3,
    ("Lower", "Trousers"): 30,
    ("Shoes", "Boots"): 5,
}


def sample(meta: Metadata, **kwargs) -> CandidateSet:
    return sample_candidates(
        meta.product_ids, meta.texts, meta.subcategories, meta.categories, RetrievalProtocol(**kwargs)
    )


def oracle(images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Knows the positive: 1 for an image and text of the same row, a small varying score otherwise."""
    image_rows, text_rows = RowInputs.rows_of(images, input_ids)
    return torch.where(image_rows == text_rows, 1.0, 0.01 * ((image_rows * 7 + text_rows) % 50) / 50)


def constant(images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return torch.full((images.shape[0],), 0.5)


# ------------------------------------------------------------------------------------ sampling
def test_same_seed_same_lists_other_seed_other_lists() -> None:
    meta = make_metadata(SIZES, duplicate_every=4)
    a, b = sample(meta, queries=30, negatives=20, seed=3), sample(meta, queries=30, negatives=20, seed=3)
    assert a.repeats == b.repeats
    assert sample(meta, queries=30, negatives=20, seed=4).repeats != a.repeats


def test_fewer_queries_give_a_prefix_of_the_same_lists() -> None:
    meta = make_metadata(SIZES)
    many, few = sample(meta, queries=40, negatives=10, seed=1), sample(meta, queries=7, negatives=10, seed=1)
    assert few.repeats[0] == many.repeats[0][:7]


def test_repeats_draw_fresh_queries() -> None:
    sets = sample(make_metadata(SIZES), queries=20, negatives=10, repeats=3, seed=0).repeats
    assert len(sets) == 3 and sets[0] != sets[1] != sets[2]


@pytest.mark.parametrize("topup", ["category", "any"])
def test_candidates_follow_the_rules(topup: str) -> None:
    meta = make_metadata(SIZES, duplicate_every=4)
    k = 15
    cset = sample(meta, queries=1000, negatives=k, topup=topup, seed=0)
    queries = cset.repeats[0]
    assert len(queries) == 90  # every product, capped at the catalogue
    topped = 0
    for c in queries:
        assert c.candidates[c.positive_index] == c.query and len(c.candidates) == k + 1
        assert len(set(c.candidates)) == k + 1
        q_row = c.query_row
        q_text, q_sub, q_cat = (
            normalise_text(meta.texts[q_row]),
            meta.subcategories[q_row],
            meta.categories[q_row],
        )
        outside = 0
        for j, (pid, row) in enumerate(zip(c.candidates, c.rows)):
            assert meta.product_ids[row] == pid
            if j == c.positive_index:
                continue
            assert pid != c.query and normalise_text(meta.texts[row]) != q_text
            outside += meta.subcategories[row] != q_sub
        assert c.topped_up == outside
        pool = sum(
            1 for s, t in zip(meta.subcategories, meta.texts) if s == q_sub and normalise_text(t) != q_text
        )
        assert outside == max(0, k - pool)  # the whole sub-category first, then the top-up
        if topup == "category" and outside:
            same_cat = sum(
                1
                for s, c2, t in zip(meta.subcategories, meta.categories, meta.texts)
                if s != q_sub and c2 == q_cat and normalise_text(t) != q_text
            )
            from_cat = sum(meta.categories[r] == q_cat for r in c.rows[1:] if meta.subcategories[r] != q_sub)
            assert from_cat == min(outside, same_cat)
        topped += outside > 0
    assert cset.num_topped_up == topped > 0
    assert cset.num_skipped == 0


def test_skip_drops_queries_of_small_subcategories() -> None:
    meta = make_metadata(SIZES)
    cset = sample(meta, queries=1000, negatives=20, topup="skip")
    assert {meta.subcategories[c.query_row] for c in cset.repeats[0]} == {"Top", "Trousers"}
    assert cset.num_skipped == 12 + 3 + 5 and cset.num_topped_up == 0


def test_products_with_several_rows_count_once() -> None:
    meta = Metadata(
        ["a", "a", "b", "c", "c", "d"],
        ["A red top", "A red top", "A blue top", "A green top", "A green top", "A red top"],
        ["Top"] * 6,
        ["Upper"] * 6,
    )
    cset = sample(meta, queries=10, negatives=2)
    assert sorted(c.query for c in cset.repeats[0]) == ["a", "b", "c", "d"]
    for c in cset.repeats[0]:
        assert c.rows[0] == meta.product_ids.index(c.query)  # the first row stands for the product
        if c.query in ("a", "d"):  # same text: never each other's negative
            assert {"a", "d"} - {c.query} & set(c.candidates) == set()


def test_too_few_products_is_a_clear_error() -> None:
    meta = make_metadata({("Upper", "Top"): 5})
    with pytest.raises(ValueError, match="use --negatives 4 or fewer"):
        sample(meta, negatives=10)


def test_bad_options_name_the_flag() -> None:
    with pytest.raises(ValueError, match="--topup"):
        RetrievalProtocol(topup="nearby")
    with pytest.raises(ValueError, match="--ties"):
        RetrievalProtocol(ties="random")
    with pytest.raises(ValueError, match="--negatives"):
        RetrievalProtocol(negatives=0)


# ------------------------------------------------------------------------------------- file I/O
def test_candidate_file_round_trip(tmp_path: Path) -> None:
    meta = make_metadata(SIZES)
    cset = sample(meta, queries=12, negatives=8, repeats=2, topup="skip", seed=5)
    path = save_candidates(cset, tmp_path / "c.json")
    data = json.loads(path.read_text())
    assert data["protocol"]["seed"] == 5 and data["protocol"]["topup"] == "skip"
    assert data["protocol"]["negatives"] == 8 and len(data["repeats"]) == 2
    loaded = resolve_candidates(load_candidates(path), meta.product_ids, meta.subcategories)
    assert loaded.repeats == cset.repeats and loaded.skipped == cset.skipped


def test_lists_made_elsewhere_are_accepted_and_checked(tmp_path: Path) -> None:
    meta = make_metadata(SIZES)
    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps([{"query": "p00001", "candidates": ["p00002", "p00001", "p00050"]}]))
    cset = resolve_candidates(load_candidates(path), meta.product_ids, meta.subcategories)
    (c,) = cset.repeats[0]
    assert c.positive_index == 1 and c.rows == (2, 1, 50) and c.topped_up == 1
    path.write_text(json.dumps({"queries": [{"query": "p00001", "candidates": ["p00001", "zz"]}]}))
    with pytest.raises(ValueError, match="product zz is not in the evaluation catalogue"):
        resolve_candidates(load_candidates(path), meta.product_ids, meta.subcategories)
    path.write_text(json.dumps([{"query": "p1", "candidates": ["p1", "p2"], "positive_index": 1}]))
    with pytest.raises(ValueError, match=r"candidates\[positive_index=1\] is not the query"):
        load_candidates(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_candidates(path)
    with pytest.raises(FileNotFoundError, match="--candidates"):
        load_candidates(tmp_path / "missing.json")


# --------------------------------------------------------------------------------------- ranking
def test_tie_rules() -> None:
    tied = np.array([0.5, 0.5, 0.5, 0.2])
    assert positive_rank(tied, 0, "pessimistic") == 3
    assert positive_rank(tied, 0, "optimistic") == 1
    assert positive_rank(tied, 2, "optimistic") == 3  # a stable sort of the list as stored
    assert positive_rank(np.array([0.1, 0.9, 0.3]), 1, "pessimistic") == 1
    assert positive_rank(np.array([0.1, 0.9, 0.3]), 0, "pessimistic") == 3
    nan_positive = np.array([np.nan, 0.1, 0.2])
    assert positive_rank(nan_positive, 0, "pessimistic") == 3  # NaN never ranks first
    assert positive_rank(np.full(5, np.nan), 0, "pessimistic") == 5


def test_recall_metrics_names_and_std() -> None:
    ranks = [np.array([1, 2, 6, 11]), np.array([1, 1, 5, 20])]
    m = recall_metrics(ranks, "tir", 100)
    assert m["tir_r1_1p100_subcat"] == pytest.approx((0.25 + 0.5) / 2)
    assert m["tir_r5_1p100_subcat"] == pytest.approx((0.5 + 0.75) / 2)
    assert m["tir_r10_1p100_subcat"] == pytest.approx((0.75 + 0.75) / 2)
    assert m["tir_sumr_1p100_subcat"] == pytest.approx(100 * (0.625 + 0.75))
    assert m["tir_r1_1p100_subcat_std"] == pytest.approx(np.std([0.25, 0.5], ddof=1))
    assert "tir_r1_1p100_subcat_std" not in recall_metrics(ranks[:1], "tir", 100)


def run(meta: Metadata, scorer, **protocol) -> dict:
    out = run_retrieval(meta, RowInputs(), scorer, RetrievalProtocol(**protocol), batch_size=37)
    return out.metrics


def test_oracle_scorer_gets_recall_one() -> None:
    m = run(make_metadata(SIZES, duplicate_every=4), oracle, queries=50, negatives=20, repeats=2)
    for d in names.DIRECTIONS:
        for k in names.RECALL_KS:
            assert m[names.recall(d, k, 20)] == 1.0
        assert m[names.sum_recall(d, 20)] == 200.0
        assert m[names.mean_rank(d, 20)] == 1.0
        assert m[names.tied(d, 20)] == 0.0
    assert m[names.retrieval_count("queries", 20)] == 100


def test_constant_scorer_gets_zero_unless_ties_are_optimistic() -> None:
    meta = make_metadata(SIZES)
    m = run(meta, constant, queries=30, negatives=20)
    for d in names.DIRECTIONS:
        for k in names.RECALL_KS:
            assert m[names.recall(d, k, 20)] == 0.0
        assert m[names.mean_rank(d, 20)] == 21.0
        assert m[names.tied(d, 20)] == 20.0
    optimistic = run(meta, constant, queries=30, negatives=20, ties="optimistic")
    assert optimistic[names.recall("tir", 1, 20)] == 1.0  # what the stable sort reported


def test_each_distinct_pair_is_scored_once() -> None:
    seen: list[tuple[int, int]] = []

    def counting(images, input_ids, attention_mask):
        image_rows, text_rows = RowInputs.rows_of(images, input_ids)
        seen.extend(zip(image_rows.tolist(), text_rows.tolist()))
        return oracle(images, input_ids, attention_mask)

    meta = make_metadata({("Upper", "Top"): 12})
    out = run_retrieval(meta, RowInputs(), counting, RetrievalProtocol(queries=12, negatives=11, repeats=2))
    assert len(seen) == len(set(seen)) == 144  # the full 12 x 12 matrix, shared by both directions
    assert out.pair_slots == 2 * 2 * 12 * 12


def test_rerunning_the_saved_lists_reproduces_the_metrics(tmp_path: Path) -> None:
    meta = make_metadata(SIZES)
    rng = np.random.default_rng(0)
    table = rng.random((len(meta), len(meta)))

    def fixed(images, input_ids, attention_mask):
        i, t = RowInputs.rows_of(images, input_ids)
        return torch.tensor(table[i.numpy(), t.numpy()])

    protocol = RetrievalProtocol(queries=25, negatives=12, seed=9)
    first = run_retrieval(meta, RowInputs(), fixed, protocol)
    path = save_candidates(first.candidates, tmp_path / "lists.json")
    again = run_retrieval(
        meta, RowInputs(), fixed, RetrievalProtocol(seed=123), candidates=load_candidates(path)
    )
    assert {k: v for k, v in again.metrics.items() if "per_s" not in k and "seconds" not in k} == {
        k: v for k, v in first.metrics.items() if "per_s" not in k and "seconds" not in k
    }


# -------------------------------------------------------------------------------- random init
class RandomInputs:
    """Random (seeded) 32-px images and 8-token texts per row: a random-init model sees no match."""

    def __init__(self, n: int, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.ids = [[101, *torch.randint(1000, 29000, (6,), generator=g).tolist(), 102] for _ in range(n)]

    def token_ids(self, row: int) -> list[int]:
        return self.ids[row]

    def batch(self, image_rows, text_rows):
        ids = torch.tensor([self.ids[r] for r in text_rows])
        return self.images[list(image_rows)], ids, torch.ones_like(ids)


def test_random_init_model_scores_near_chance() -> None:
    """A random-init ``mvlt_nano`` (32 px) ranks the positive uniformly among the 101 candidates.

    110 products of one sub-category, 2 repeats, both directions: 440 ranks over a 110 x 110 score
    matrix (12,100 pairs at most, each scored once; ~4 s on 2 idle cores). The tolerance is 3
    standard errors of a uniform rank over 1..101 computed with n = 110 (the distinct query products
    per direction), which is conservative: the 440 ranks are more than 110 independent draws.
    For R@1 that is 1/101 +- 0.028, for R@10 10/101 +- 0.085, for the mean rank 51 +- 8.3.
    """
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=32).eval()

    def score(images, input_ids, attention_mask):
        with torch.inference_mode():
            return model.match_probability(images, input_ids, attention_mask)

    n, k = 110, 100
    meta = make_metadata({("Upper", "Top"): n})
    out = run_retrieval(
        meta, RandomInputs(n), score, RetrievalProtocol(queries=n, negatives=k, repeats=2), batch_size=256
    )
    ranks = np.concatenate([r for d in names.DIRECTIONS for r in out.ranks[d]])
    assert ranks.size == 2 * 2 * n
    se = lambda p: math.sqrt(p * (1 - p) / n)  # noqa: E731
    for at in (1, 5, 10):
        p = at / (k + 1)
        assert abs(np.mean(ranks <= at) - p) <= 3 * se(p), (at, np.mean(ranks <= at))
    mean_rank_se = math.sqrt(((k + 1) ** 2 - 1) / 12 / n)
    assert abs(ranks.mean() - (k + 2) / 2) <= 3 * mean_rank_se


# ---------------------------------------------------------------------------------- the scorer
class SaturatingModel:
    """ITM logits with large margins: the float32 probabilities of all three round to exactly 1.0."""

    margins = torch.tensor([18.0, 25.0, 40.0])

    def match_score(self, images, input_ids, attention_mask):
        return self.margins[: images.shape[0]]

    def match_probability(self, images, input_ids, attention_mask):
        return torch.sigmoid(self.match_score(images, input_ids, attention_mask))


def test_log_odds_do_not_saturate_like_probabilities() -> None:
    model, x = SaturatingModel(), torch.zeros(3, 3, 4, 4)
    ids = torch.ones(3, 4, dtype=torch.long)
    probs = model_scorer(model, "probability")(x, ids, ids).numpy()
    assert (probs == 1.0).all()  # a tie the pessimistic rule would punish
    odds = model_scorer(model, "log_odds")(x, ids, ids).numpy()
    assert odds.tolist() == [18.0, 25.0, 40.0]
    assert positive_rank(probs, 2) == 3 and positive_rank(odds, 2) == 1
    with pytest.raises(ValueError, match="--score"):
        model_scorer(model, "logits")


def test_log_odds_rank_like_match_probability() -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=32).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(24, 3, 32, 32, generator=g)
    ids = torch.randint(1000, 29000, (24, 9), generator=g)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        probs = model_scorer(model, "probability")(images, ids, mask).double()
        odds = model_scorer(model, "log_odds")(images, ids, mask).double()
    torch.testing.assert_close(torch.sigmoid(odds), probs, atol=1e-6, rtol=0)
    assert bool((probs[torch.argsort(odds)].diff() >= 0).all())
