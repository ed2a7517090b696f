"""Hubs corrected at inference (``mvlt.eval.hubs``, ``--hub-bank``) and photos embedded with their
mirror image (``--mirror``): the pull's arithmetic, that offsets land on the candidate side of each
direction before the ITM shortlist, and the evaluation wiring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.eval import EvalOptions, RetrievalProtocol, evaluate
from mvlt.eval.hubs import bank_pull, candidate_offsets
from mvlt.eval.retrieval import run_retrieval, sample_candidates
from mvlt.exits import UsageError

from .fakes import RowInputs, make_metadata
from .test_evaluate import SmallCatalogue, WordTokenizer
from .test_scorers import SIZES, RowEmbedder, oracle


def test_the_pull_is_a_log_sum_exp_at_the_temperature() -> None:
    items = torch.nn.functional.normalize(
        torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=1
    )
    bank = torch.nn.functional.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    expected = 0.05 * torch.logsumexp(items.double() @ bank.double().t() / 0.05, dim=1)
    torch.testing.assert_close(bank_pull(items, bank, 0.05), expected)
    # A hub, near every bank entry, pulls harder than an item near none.
    hub, loner = bank.mean(0, keepdim=True), -bank.mean(0, keepdim=True)
    assert bank_pull(hub, bank, 0.05) > bank_pull(loner, bank, 0.05)
    with pytest.raises(ValueError, match="temperature"):
        bank_pull(items, bank, 0.0)


def test_offsets_are_keyed_by_the_candidate_side_of_each_direction() -> None:
    meta = make_metadata(SIZES)
    cset = sample_candidates(meta.product_ids, meta.texts, meta.subcategories, meta.categories,
                             RetrievalProtocol(queries=5, negatives=10))  # fmt: skip
    items, bank = RowEmbedder(), RowEmbedder()  # they record the rows asked for
    offsets = candidate_offsets(cset, items, bank, [0, 1, 2], temperature=0.1)
    candidates = {row for c in cset.repeats[0] for row in c.rows}
    assert set(offsets["tir"]) == candidates and set(offsets["itr"]) == candidates
    assert sorted(set(items.image_rows)) == sorted(candidates) and bank.text_rows == [0, 1, 2]
    row = next(iter(candidates))
    expected = bank_pull(items._embed([row], False), bank._embed([0, 1, 2], True), 0.1)
    assert offsets["tir"][row] == pytest.approx(float(expected))


def test_offsets_move_the_itc_order_and_the_itm_shortlist() -> None:
    meta = make_metadata(SIZES)
    protocol = RetrievalProtocol(queries=20, negatives=10)
    plain = run_retrieval(meta, RowInputs(), oracle, protocol, scorers=("itc+itm", "itc"),
                          embedder=RowEmbedder(), rerank_top=3)  # fmt: skip
    assert plain.metrics["itc_itm_tir_r1_1p10_subcat"] == 1.0  # the oracle ITM repairs every list

    def punish_positives(cset) -> dict[str, dict[int, float]]:
        """A penalty of 10 on every query's own row, as a candidate: no positive ranks first."""
        positives = {c.query_row for c in cset.repeats[0]}
        rows = {row for c in cset.repeats[0] for row in c.rows}
        table = {row: 10.0 if row in positives else 0.0 for row in rows}
        return {"tir": table, "itr": dict(table)}

    out = run_retrieval(meta, RowInputs(), oracle, protocol, scorers=("itc+itm", "itc"),
                        embedder=RowEmbedder(), rerank_top=3, hub_offsets=punish_positives)  # fmt: skip
    for direction in ("tir", "itr"):
        assert out.metrics[f"itc_{direction}_r1_1p10_subcat"] == 0.0
        # Out of the ITC top 3, the positive never reaches ITM, which would have put it first.
        assert out.metrics[f"itc_itm_{direction}_r1_1p10_subcat"] == 0.0

    def no_offsets(cset) -> dict[str, dict[int, float]]:
        return {d: dict.fromkeys(table, 0.0) for d, table in punish_positives(cset).items()}

    zero = run_retrieval(meta, RowInputs(), oracle, protocol, scorers=("itc+itm", "itc"),
                         embedder=RowEmbedder(), rerank_top=3, hub_offsets=no_offsets)  # fmt: skip
    recalls = [k for k in plain.metrics if "_r1_" in k or "_r5_" in k]
    assert recalls and all(zero.metrics[k] == plain.metrics[k] for k in recalls)


def test_evaluate_with_a_bank_and_mirror_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=32)
    protocol = RetrievalProtocol(queries=6, negatives=5)
    base = {"retrieval": protocol, "score": "itc+itm,itc"}
    plain = evaluate(
        model, SmallCatalogue(), "retrieval", EvalOptions(**base), None, tokenizer=WordTokenizer()
    )
    options = EvalOptions(**base, mirror=True, hub_bank=8)
    corrected = evaluate(model, SmallCatalogue(), "retrieval", options, tmp_path, tokenizer=WordTokenizer(),
                         bank=SmallCatalogue())  # fmt: skip
    record = corrected["protocol"]["retrieval"]
    assert record["mirror"] is True and record["hub_bank"]["rows"] == 8
    assert corrected["retrieval_seconds_hubs"] > 0
    keys: Sequence[str] = [k for k in plain if k.startswith("itc_tir_mean_rank")]
    assert keys and any(plain[k] != corrected[k] for k in keys)  # the scores did change
    with pytest.raises(UsageError, match="hub-bank"):
        evaluate(model, SmallCatalogue(), "retrieval", options, None, tokenizer=WordTokenizer())
    with pytest.raises(UsageError, match="hub-bank"):
        EvalOptions(hub_bank=-1)
