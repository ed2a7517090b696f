"""The short-query benchmark's queries and ranking metrics (experiments/pretrained/short_queries.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .scripts import load_script

short_queries = load_script("pretrained/short_queries.py")


def test_queries_come_from_attributes_and_name_their_relevant_rows():
    rows = [
        {"colour": "Black", "subcategory": "Trousers", "pattern": "Solid"},
        {"colour": "Black", "subcategory": "Trousers", "pattern": "Stripe"},
        {"colour": "White", "subcategory": "T-shirt", "pattern": "Stripe"},
        {"colour": "Other", "subcategory": "T-shirt", "pattern": "Solid"},
    ]
    assert short_queries.attribute_queries(rows) == {
        "black trousers": {0, 1},
        "stripe black trousers": {1},
        "white t-shirt": {2},
        "stripe white t-shirt": {2},
    }


def test_precision_and_ndcg_at_10():
    scores = np.arange(20, dtype=float)[::-1].copy()  # item 0 first, item 19 last
    assert short_queries.ranking_metrics(scores, {0, 1}) == (0.2, 1.0)
    precision, ndcg = short_queries.ranking_metrics(scores, {1, 15})
    assert precision == 0.1 and ndcg == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert short_queries.ranking_metrics(scores, {19}) == (0.0, 0.0)


def test_evaluate_averages_over_queries():
    image = torch.eye(4)
    text = torch.eye(4)[:2]  # query i is most similar to image i
    result = short_queries.evaluate(text, image, {"a": {0}, "b": {3}})
    # "b" is relevant to item 3, which ties with items 0 and 2 behind item 1: rank 4
    assert result["queries"] == 2 and result["ndcg_at_10"] == pytest.approx((1 + 1 / np.log2(5)) / 2)


def test_the_hub_correction_subtracts_each_photos_pull():
    text, image = torch.eye(3)[:2], torch.eye(3)
    pull = torch.tensor([0.5, 0.0, 2.0], dtype=torch.double)
    q, p = short_queries.corrected(text, image, pull)
    expected = text.double() @ image.double().t() - pull[None, :]
    torch.testing.assert_close(q @ p.t(), expected)
