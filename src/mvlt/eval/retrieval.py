"""Text-to-image and image-to-text retrieval under the 1 + K protocol (FashionBERT's, K = 100).

The protocol, every choice explicit and recorded:

- **Queries** are products drawn with a seed from the evaluation split (several rows of one product,
  e.g. Fashion-Gen poses, count once; the product's first row stands for it).
- **Candidates** are the positive (the query product itself) and ``K`` negatives: *other products*
  (a different ``product_id`` and not the same text, compared lower-cased with whitespace collapsed)
  of the *same sub-category*. When the sub-category has too few, the top-up rule fills the list:
  ``category`` (the same main category, then anywhere), ``any`` (anywhere) or ``skip`` (drop the
  query). A query is *topped up* when any of its negatives comes from another sub-category.
- **Both directions use the same lists**: TIR scores the query's text against the candidates'
  images, ITR the query's image against the candidates' texts, so the two numbers are paired.
- **Scorers.** ``itm`` (the paper's): the ITM head on the joint pass of each pair (no MLM, no
  decoder), by default its log-odds ``logit[match] - logit[no match]`` in fp32: it ranks exactly as
  ``match_probability`` does, but a float32 probability saturates at 1.0 once the margin passes ~17
  and bf16 logits collapse close scores into a few values, and either would manufacture ties.
  ``itc``: the cosine of ``encode_texts`` and ``encode_images``, one encoder pass per image and per
  text instead of one per pair. ``itc+itm`` (ALBEF's inference, with score fusion): the ITC order,
  whose top ``rerank_top`` candidates are re-ordered by the ITC logit (cosine / temperature) plus
  the ITM log-odds, two log-scale scores of the same pair. Each distinct (image, text) pair is scored once
  per scorer: the positive pair is shared by TIR and ITR, and small sub-categories repeat pairs.
- **Ties cannot flatter**: ``pessimistic`` ranks the positive 1 + #negatives scoring >= it, so a
  constant scorer gets R@1 = 0. ``optimistic`` is a stable descending sort of the list as stored
  (the positive first in our lists), which is what the released code did.
- The lists are saved as JSON and can be re-run exactly (``--candidates``), also lists made elsewhere.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exits import UsageError
from ..fileio import atomic_write_text, read_json
from . import names
from .scoring import Embedder, PairInputs, PairScorer, Scorer, embedding_scores, score_pairs

log = logging.getLogger("mvlt.eval")

TOPUP_RULES = ("category", "any", "skip")
TIE_RULES = ("pessimistic", "optimistic")
FILE_FORMAT = "mvlt-retrieval-candidates"
FILE_VERSION = 1

SCORERS = ("itc+itm", "itc", "itm")
"""Retrieval scorers, best first: ``itc+itm`` re-ranks the ITC shortlist with ITM."""


def scorer_tag(scorer: str) -> str:
    """``itc+itm`` -> ``itc_itm``: the prefix of that scorer's metric names."""
    return scorer.replace("+", "_")


def resolve_scorers(requested: str, has_itc: bool) -> tuple[str, ...]:
    """``auto`` (every scorer the model supports, the best first), one scorer or a comma list."""
    if requested == "auto":
        return SCORERS if has_itc else ("itm",)
    chosen = tuple(dict.fromkeys(s.strip() for s in requested.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in SCORERS]
    if unknown or not chosen:
        raise UsageError(f"--score: unknown scorer(s) {unknown}; choose auto or from {', '.join(SCORERS)}")
    if not has_itc and any(s != "itm" for s in chosen):
        raise ValueError(
            "--score itc / itc+itm need ITC heads, and this checkpoint has none (contrastive_dim = 0: "
            "the paper's recipe or the authors' weights); use --score itm"
        )
    return chosen


@dataclass(frozen=True)
class RetrievalProtocol:
    """The options of the 1 + K protocol (defaults: the paper's 1,000 queries, 1 + 100)."""

    queries: int = 1000
    repeats: int = 1
    negatives: int = 100
    topup: str = "category"
    ties: str = "pessimistic"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.queries < 1:
            raise ValueError(f"--queries must be >= 1, got {self.queries}")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {self.repeats}")
        if self.negatives < 1:
            raise ValueError(f"--negatives must be >= 1, got {self.negatives}")
        if self.topup not in TOPUP_RULES:
            raise ValueError(f"--topup must be one of {TOPUP_RULES}, got {self.topup!r}")
        if self.ties not in TIE_RULES:
            raise ValueError(f"--ties must be one of {TIE_RULES}, got {self.ties!r}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class CandidateList:
    """One query: its product id, the candidate product ids (the positive included) and where the
    positive sits. ``rows`` are the catalogue rows the candidates are read from (one per candidate);
    ``topped_up`` counts negatives from outside the query's sub-category."""

    query: str
    candidates: tuple[str, ...]
    positive_index: int = 0
    rows: tuple[int, ...] | None = None
    topped_up: int = 0

    @property
    def query_row(self) -> int:
        if self.rows is None:
            raise ValueError(f"query {self.query}: candidate rows are not resolved against a catalogue")
        return self.rows[self.positive_index]

    @property
    def negatives(self) -> int:
        return len(self.candidates) - 1


@dataclass
class CandidateSet:
    """All candidate lists of a run: one list of queries per repeat, the queries the ``skip`` rule
    dropped, and the protocol options that produced them (recorded in the JSON file)."""

    repeats: list[list[CandidateList]]
    skipped: list[list[str]] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        return sum(len(r) for r in self.repeats)

    @property
    def num_topped_up(self) -> int:
        return sum(1 for r in self.repeats for c in r if c.topped_up)

    @property
    def num_skipped(self) -> int:
        return sum(len(s) for s in self.skipped)

    @property
    def negatives(self) -> int:
        """K of the lists (the largest, if lists made elsewhere differ)."""
        return max((c.negatives for r in self.repeats for c in r), default=0)


# ------------------------------------------------------------------------------------- sampling
def normalise_text(text: str) -> str:
    """Texts that tokenize the same are the same text: lower-cased, whitespace collapsed."""
    return " ".join(text.lower().split())


def _codes(values: Sequence[str]) -> np.ndarray:
    """Integer codes of string values (equal strings, equal codes) for vectorised comparisons."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def product_rows(product_ids: Sequence[str]) -> dict[str, int]:
    """Each product's representative row: its first row in catalogue order."""
    rows: dict[str, int] = {}
    for row, pid in enumerate(product_ids):
        rows.setdefault(pid, row)
    return rows


def sample_candidates(
    product_ids: Sequence[str],
    texts: Sequence[str],
    subcategories: Sequence[str],
    categories: Sequence[str],
    protocol: RetrievalProtocol,
) -> CandidateSet:
    """Draw the query products and their candidate lists, ``protocol.repeats`` times.

    Pure function of the metadata lists and the seed: the queries of repeat ``r`` come from
    ``default_rng([seed, r, 0])`` and the negatives of query product ``q`` from
    ``default_rng([seed, r, 1, q])``, so a query's list does not depend on how many queries are
    drawn. The positive is at index 0.
    """
    if not len(product_ids) == len(texts) == len(subcategories) == len(categories):
        raise ValueError("sample_candidates: the metadata lists must have the same length")
    reps = product_rows(product_ids)
    pids = list(reps)
    rows = np.array([reps[p] for p in pids], dtype=np.int64)
    text = _codes([normalise_text(texts[r]) for r in rows])
    sub = _codes([subcategories[r] for r in rows])
    cat = _codes([categories[r] for r in rows])
    k, n = protocol.negatives, len(pids)
    if n < 2:
        raise ValueError(f"retrieval needs at least 2 products in the evaluation split, found {n}")
    repeats: list[list[CandidateList]] = []
    skipped: list[list[str]] = []
    for r in range(protocol.repeats):
        order = np.random.default_rng([protocol.seed, r, 0]).permutation(n)[: min(protocol.queries, n)]
        lists, dropped = [], []
        for q in order.tolist():
            rng = np.random.default_rng([protocol.seed, r, 1, q])
            eligible = text != text[q]  # also excludes q itself
            same_sub = sub == sub[q]
            tiers = [np.flatnonzero(eligible & same_sub)]
            if len(tiers[0]) < k and protocol.topup == "skip":
                dropped.append(pids[q])
                continue
            if protocol.topup == "category":
                same_cat = cat == cat[q]
                tiers += [np.flatnonzero(eligible & ~same_sub & same_cat)]
                tiers += [np.flatnonzero(eligible & ~same_sub & ~same_cat)]
            elif protocol.topup == "any":
                tiers += [np.flatnonzero(eligible & ~same_sub)]
            chosen: list[np.ndarray] = []
            need = k
            for tier in tiers:
                take = tier if len(tier) <= need else rng.choice(tier, size=need, replace=False)
                chosen.append(rng.permutation(take))
                need -= len(take)
                if need == 0:
                    break
            if need:
                raise ValueError(
                    f"query product {pids[q]}: only {k - need} other products with a different text "
                    f"exist in the evaluation split; use --negatives {k - need} or fewer"
                )
            negatives = np.concatenate(chosen)
            lists.append(
                CandidateList(
                    query=pids[q],
                    candidates=(pids[q], *(pids[i] for i in negatives.tolist())),
                    positive_index=0,
                    rows=(int(rows[q]), *(int(rows[i]) for i in negatives.tolist())),
                    topped_up=k - len(tiers[0]) if len(tiers[0]) < k else 0,
                )
            )
        repeats.append(lists)
        skipped.append(dropped)
    record = {**asdict(protocol), "products": n, "text_rule": "different product_id and normalised text"}
    return CandidateSet(repeats, skipped, record)


# ----------------------------------------------------------------------------------- file I/O
def save_candidates(cset: CandidateSet, path: str | Path) -> Path:
    """Write the lists as JSON: the protocol, then one query per line (diff- and grep-friendly)."""
    lines = [
        "{",
        f'"format": "{FILE_FORMAT}", "version": {FILE_VERSION},',
        f'"protocol": {json.dumps(cset.protocol, sort_keys=True)},',
        '"repeats": [',
    ]
    for r, queries in enumerate(cset.repeats):
        skipped = cset.skipped[r] if r < len(cset.skipped) else []
        lines.append(f'{{"repeat": {r}, "skipped": {json.dumps(skipped)}, "queries": [')
        entries = []
        for c in queries:
            entry: dict[str, Any] = {
                "query": c.query,
                "positive_index": c.positive_index,
                "topped_up": c.topped_up,
                "candidates": list(c.candidates),
            }
            if c.rows is not None:
                entry["rows"] = list(c.rows)
            entries.append(json.dumps(entry))
        lines.append(",\n".join(entries))
        lines.append("]}" + ("," if r < len(cset.repeats) - 1 else ""))
    lines += ["]", "}"]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def load_candidates(path: str | Path) -> CandidateSet:
    """Read lists written by :func:`save_candidates` or made elsewhere.

    Accepted shapes: ``{"repeats": [{"queries": [...]}, ...]}``, ``{"repeats": [[...], ...]}``,
    ``{"queries": [...]}`` or a bare list of queries. A query is ``{"query": id, "candidates":
    [ids], "positive_index": i}``; without ``positive_index`` the query id must occur exactly once
    among the candidates. ``rows`` (catalogue rows) are optional and checked when resolved.
    """
    path = Path(path)
    data = read_json(path, missing=f"--candidates file not found: {path}")
    protocol: dict[str, Any] = {}
    if isinstance(data, dict):
        protocol = dict(data.get("protocol") or {})
        if "repeats" in data:
            raw_repeats = data["repeats"]
        elif "queries" in data:
            raw_repeats = [data]
        else:
            raise ValueError(f"--candidates {path}: expected a 'repeats' or 'queries' key")
    elif isinstance(data, list):
        raw_repeats = [data]
    else:
        raise ValueError(f"--candidates {path}: expected a JSON object or list")
    repeats, skipped = [], []
    for r, raw in enumerate(raw_repeats):
        queries = raw.get("queries") if isinstance(raw, dict) else raw
        if not isinstance(queries, list):
            raise ValueError(f"--candidates {path}: repeat {r} has no list of queries")
        skipped.append([str(s) for s in raw.get("skipped", [])] if isinstance(raw, dict) else [])
        repeats.append([_parse_query(q, f"{path}, repeat {r}, query {i}") for i, q in enumerate(queries)])
    if not any(repeats):
        raise ValueError(f"--candidates {path} holds no queries")
    return CandidateSet(repeats, skipped, {**protocol, "candidates_file": str(path)})


def _parse_query(entry: Any, where: str) -> CandidateList:
    if not isinstance(entry, dict) or "query" not in entry or "candidates" not in entry:
        raise ValueError(f"{where}: expected an object with 'query' and 'candidates'")
    query, candidates = str(entry["query"]), tuple(str(c) for c in entry["candidates"])
    if len(candidates) < 2:
        raise ValueError(f"{where}: needs the positive and at least one negative")
    if "positive_index" in entry:
        pos = int(entry["positive_index"])
        if not 0 <= pos < len(candidates) or candidates[pos] != query:
            raise ValueError(f"{where}: candidates[positive_index={pos}] is not the query {query}")
    elif candidates.count(query) == 1:
        pos = candidates.index(query)
    else:
        raise ValueError(f"{where}: no positive_index and the query {query} is not among the candidates once")
    if candidates.count(query) != 1:
        raise ValueError(f"{where}: the query product {query} occurs more than once among its candidates")
    rows = entry.get("rows")
    if rows is not None and len(rows) != len(candidates):
        raise ValueError(f"{where}: 'rows' has {len(rows)} entries for {len(candidates)} candidates")
    return CandidateList(query, candidates, pos, tuple(int(x) for x in rows) if rows is not None else None)


def resolve_candidates(
    cset: CandidateSet, product_ids: Sequence[str], subcategories: Sequence[str]
) -> CandidateSet:
    """Point loaded lists at this catalogue's rows and recount the top-ups.

    Given rows are kept when they hold the named product (so lists can pick a specific image of a
    product); otherwise, and when absent, the product's first row is used. A product id the
    catalogue does not hold is an error naming the query.
    """
    reps = product_rows(product_ids)
    n = len(product_ids)
    repeats = []
    for r, queries in enumerate(cset.repeats):
        resolved = []
        for i, c in enumerate(queries):
            rows = []
            for j, pid in enumerate(c.candidates):
                given = c.rows[j] if c.rows is not None else None
                if given is not None and 0 <= given < n and product_ids[given] == pid:
                    rows.append(given)
                elif pid in reps:
                    rows.append(reps[pid])
                else:
                    raise ValueError(
                        f"candidate lists, repeat {r}, query {i} ({c.query}): product {pid} is not in the "
                        "evaluation catalogue (wrong --data or --split?)"
                    )
            query_sub = subcategories[rows[c.positive_index]]
            topped = sum(
                1 for j, row in enumerate(rows) if j != c.positive_index and subcategories[row] != query_sub
            )
            resolved.append(CandidateList(c.query, c.candidates, c.positive_index, tuple(rows), topped))
        repeats.append(resolved)
    return CandidateSet(repeats, cset.skipped, cset.protocol)


# -------------------------------------------------------------------------------------- scoring
def required_pairs(cset: CandidateSet, directions: Iterable[str] = names.DIRECTIONS) -> set[tuple[int, int]]:
    """The distinct ``(image_row, text_row)`` pairs the lists need, over all repeats."""
    pairs: set[tuple[int, int]] = set()
    for queries in cset.repeats:
        for c in queries:
            for direction in directions:
                pairs.update(pair_keys(c, direction))
    return pairs


def shortlist(scores: np.ndarray, positive_index: int, k: int) -> np.ndarray:
    """Indices of the ``k`` best candidates; a negative tied with the positive goes first (ties
    never flatter the positive, as in ``positive_rank``'s pessimistic rule)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    is_positive = np.arange(len(s)) == positive_index
    return np.lexsort((is_positive, -s))[:k]


def reranked_scores(first: np.ndarray, second: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Scores that rank the ``top`` candidates by ``second``, above all others ranked by ``first``."""
    out = np.nan_to_num(np.asarray(first, dtype=np.float64), nan=-np.inf)
    top_scores = np.nan_to_num(np.asarray(second, dtype=np.float64)[top], nan=-np.inf)
    finite_first, finite_top = out[np.isfinite(out)], top_scores[np.isfinite(top_scores)]
    ceiling = finite_first.max() if finite_first.size else 0.0
    floor = finite_top.min() if finite_top.size else 0.0
    out[top] = top_scores - floor + ceiling + 1.0
    return out


def positive_rank(scores: np.ndarray, positive_index: int, ties: str = "pessimistic") -> int:
    """Rank (1 = best) of ``scores[positive_index]`` among the candidates.

    ``pessimistic``: 1 + the number of negatives scoring >= the positive (a tie never helps).
    ``optimistic``: the positive's place in a stable descending sort of the list as given.
    NaN scores count as -inf, so a broken model cannot rank first by producing NaN.
    """
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    pos = s[positive_index]
    others = np.arange(len(s)) != positive_index
    if ties == "pessimistic":
        return 1 + int(np.sum((s >= pos) & others))
    if ties == "optimistic":
        before = np.arange(len(s)) < positive_index
        return 1 + int(np.sum(s > pos)) + int(np.sum((s == pos) & before))
    raise ValueError(f"unknown tie rule {ties!r}; expected one of {TIE_RULES}")


def tied_negatives(scores: np.ndarray, positive_index: int) -> int:
    """How many negatives score exactly the positive's score (what the tie rule decides)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    return int(np.sum(s == s[positive_index])) - 1


def pair_keys(c: CandidateList, direction: str) -> list[tuple[int, int]]:
    """The ``(image_row, text_row)`` pair of each candidate: TIR (candidate image, query text),
    ITR the mirror."""
    q, rows = c.query_row, c.rows or ()
    return [(row, q) for row in rows] if direction == "tir" else [(q, row) for row in rows]


def list_scores(c: CandidateList, direction: str, scores: dict[tuple[int, int], float]) -> np.ndarray:
    """The candidates' scores for one query, in candidate order."""
    return np.array([scores[k] for k in pair_keys(c, direction)], dtype=np.float64)


def itc_list(
    c: CandidateList, direction: str, itc: dict[tuple[int, int], float],
    offsets: dict[str, dict[int, float]] | None = None,
) -> np.ndarray:  # fmt: skip
    """One query's ITC scores, less each candidate's hub offset when ``offsets`` has the direction
    (:mod:`.hubs`: keyed by candidate image row for TIR, candidate text row for ITR)."""
    scores = list_scores(c, direction, itc)
    if offsets and direction in offsets:
        side = 0 if direction == "tir" else 1
        scores = scores - np.array([offsets[direction][k[side]] for k in pair_keys(c, direction)])
    return scores


def recall_metrics(ranks: Sequence[np.ndarray], direction: str, negatives: int) -> dict[str, float]:
    """R@1/5/10, SumR and mean rank, averaged over repeats (with ``_std`` when there are several),
    and each R@k's binomial standard error ``_se`` over all queries."""
    per_repeat: dict[str, list[float]] = {}
    for r in ranks:
        r = np.asarray(r)
        if r.size == 0:
            continue
        values = {names.recall(direction, k, negatives): float(np.mean(r <= k)) for k in names.RECALL_KS}
        values[names.sum_recall(direction, negatives)] = 100.0 * (
            values[names.recall(direction, 5, negatives)] + values[names.recall(direction, 10, negatives)]
        )
        values[names.mean_rank(direction, negatives)] = float(np.mean(r))
        for name, value in values.items():
            per_repeat.setdefault(name, []).append(value)
    out: dict[str, float] = {}
    for name, values in per_repeat.items():
        out[name] = float(np.mean(values))
        if len(ranks) > 1:
            out[names.std(name)] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    queries = sum(np.asarray(r).size for r in ranks)
    for k in names.RECALL_KS:
        name = names.recall(direction, k, negatives)
        if name in out and queries:
            out[names.stderr(name)] = float(np.sqrt(out[name] * (1 - out[name]) / queries))
    return out


@dataclass
class RetrievalOutcome:
    """Ranks and scores per direction and repeat of the headline scorer (the first), the ranks
    of every scorer that ran, the metrics, and how fast ITM scoring ran."""

    candidates: CandidateSet
    ranks: dict[str, list[np.ndarray]]
    scores: dict[str, list[list[np.ndarray]]]
    metrics: dict[str, float]
    pairs_needed: int
    pair_slots: int
    seconds: float
    scorers: tuple[str, ...] = ("itm",)
    ranks_by_scorer: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs_needed / self.seconds if self.seconds > 0 else float("nan")


def run_retrieval(
    catalogue: Any,
    inputs: PairInputs,
    scorer: Scorer | None,
    protocol: RetrievalProtocol,
    *,
    candidates: CandidateSet | None = None,
    batch_size: int = 64,
    progress: bool = False,
    directions: Sequence[str] = names.DIRECTIONS,
    scorers: Sequence[str] = ("itm",),
    embedder: Embedder | None = None,
    rerank_top: int = 16,
    itc_scale: float = 1.0,
    pair_scorer: PairScorer | None = None,
    hub_offsets: Callable[[CandidateSet], dict[str, dict[int, float]]] | None = None,
) -> RetrievalOutcome:
    """Sample (or resolve the given) candidate lists, score them, rank the positives, compute metrics.

    ``catalogue`` needs the metadata lists ``product_ids``, ``texts``, ``subcategories`` and
    ``categories``; ``inputs`` makes model inputs from rows; ``scorer`` scores pairs with ITM and
    ``embedder`` gives ITC embeddings. ``scorers`` run in order: the first gives the headline
    metric names, and each also gets its names prefixed (``itc_tir_r1_1p100_subcat``, ...).
    ``itc_scale`` turns cosines into the ITC logits that ``itc+itm`` adds to the ITM scores.
    ``pair_scorer``, when given, scores the ITM pairs in place of ``scorer`` batch by batch (the
    staged scorer of a late-fusion model: each item's unimodal pass once). ``hub_offsets`` maps
    the lists to offsets subtracted from the ITC scores before the shortlist and the fusion
    (:mod:`.hubs`).
    """
    if rerank_top < 1:
        raise ValueError(f"--rerank-top must be >= 1, got {rerank_top}")
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown or not scorers:
        raise ValueError(f"unknown retrieval scorer(s) {unknown}; choose from {SCORERS}")
    if scorer is None and any(s != "itc" for s in scorers):
        raise ValueError("the itm and itc+itm scorers need an ITM scorer")
    if embedder is None and any(s != "itm" for s in scorers):
        raise ValueError("the itc and itc+itm scorers need ITC embeddings (an embedder)")
    if candidates is None:
        cset = sample_candidates(
            catalogue.product_ids, catalogue.texts, catalogue.subcategories, catalogue.categories, protocol
        )
    else:
        cset = resolve_candidates(candidates, catalogue.product_ids, catalogue.subcategories)
    if cset.num_queries == 0:
        raise ValueError(
            f"no retrieval query is left: the {protocol.topup!r} top-up rule dropped all "
            f"{cset.num_skipped} (too few products per sub-category for --negatives {protocol.negatives})"
        )
    pairs = required_pairs(cset, directions)
    slots = sum(len(c.candidates) for r in cset.repeats for c in r) * len(directions)
    timings: dict[str, float] = {}
    itc: dict[tuple[int, int], float] = {}
    if embedder is not None and any(s != "itm" for s in scorers):
        start = time.perf_counter()
        itc = embedding_scores(pairs, embedder)
        timings["itc"] = time.perf_counter() - start
    offsets = None
    if hub_offsets is not None and itc:
        start = time.perf_counter()
        offsets = hub_offsets(cset)
        timings["hubs"] = time.perf_counter() - start
    itm_pairs = pairs if "itm" in scorers else _shortlisted_pairs(cset, directions, itc, rerank_top, offsets)
    itm: dict[tuple[int, int], float] = {}
    if scorer is not None and any(s != "itc" for s in scorers):
        start = time.perf_counter()
        if pair_scorer is not None:
            itm = pair_scorer(itm_pairs)
        else:
            itm = score_pairs(itm_pairs, inputs, scorer, batch_size=batch_size, progress=progress)
        timings["itm"] = time.perf_counter() - start
    k = cset.negatives
    metrics: dict[str, float] = {}
    ranks_by: dict[str, dict[str, list[np.ndarray]]] = {}
    scores_by: dict[str, dict[str, list[list[np.ndarray]]]] = {}
    for name in scorers:
        ranks_by[name], scores_by[name], values = _rank_lists(
            cset, directions, name, itc, itm, rerank_top, protocol.ties, itc_scale, offsets
        )
        metrics.update({f"{scorer_tag(name)}_{key}": v for key, v in values.items()})
        if name == scorers[0]:
            metrics.update(values)
    metrics[names.retrieval_count("queries", k)] = cset.num_queries
    metrics[names.retrieval_count("topped_up", k)] = cset.num_topped_up
    metrics[names.retrieval_count("skipped", k)] = cset.num_skipped
    seconds = timings.get("itm", timings.get("itc", 0.0))
    scored = len(itm_pairs) if itm else len(pairs)
    metrics[names.RETRIEVAL_PAIRS_SCORED] = scored
    metrics[names.RETRIEVAL_PAIRS_PER_S] = scored / seconds if seconds > 0 else float("nan")
    for what, value in timings.items():
        metrics[f"retrieval_seconds_{what}"] = value
    log.info(
        "retrieval: %d queries x %d repeat(s), %d distinct pairs (%d slots); scorers %s; %s",
        cset.num_queries, len(cset.repeats), len(pairs), slots, ", ".join(scorers),
        ", ".join(f"{w} {v:.1f} s" for w, v in timings.items()),
    )  # fmt: skip
    head = scorers[0]
    return RetrievalOutcome(
        cset, ranks_by[head], scores_by[head], metrics, scored, slots, seconds, tuple(scorers), ranks_by
    )


def _shortlisted_pairs(
    cset: CandidateSet, directions: Sequence[str], itc: dict[tuple[int, int], float], k: int,
    offsets: dict[str, dict[int, float]] | None = None,
) -> set[tuple[int, int]]:  # fmt: skip
    """The pairs ITM must score to re-rank each list's ITC top ``k``."""
    needed: set[tuple[int, int]] = set()
    for queries in cset.repeats:
        for c in queries:
            for d in directions:
                keys = pair_keys(c, d)
                top = shortlist(itc_list(c, d, itc, offsets), c.positive_index, k)
                needed.update(keys[j] for j in top.tolist())
    return needed


def _rank_lists(
    cset: CandidateSet,
    directions: Sequence[str],
    scorer: str,
    itc: dict[tuple[int, int], float],
    itm: dict[tuple[int, int], float],
    k: int,
    ties: str,
    itc_scale: float = 1.0,
    offsets: dict[str, dict[int, float]] | None = None,
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[list[np.ndarray]]], dict[str, float]]:
    """One scorer's per-list scores, the positives' ranks and the recall metrics."""
    ranks: dict[str, list[np.ndarray]] = {}
    per_query: dict[str, list[list[np.ndarray]]] = {}
    metrics: dict[str, float] = {}
    negatives = cset.negatives
    for d in directions:
        lists = []
        for queries in cset.repeats:
            row_scores = []
            for c in queries:
                if scorer == "itm":
                    row_scores.append(list_scores(c, d, itm))
                elif scorer == "itc":
                    row_scores.append(itc_list(c, d, itc, offsets))
                else:
                    first = itc_list(c, d, itc, offsets)
                    top = shortlist(first, c.positive_index, k)
                    keys = pair_keys(c, d)
                    second = np.zeros_like(first)
                    second[top] = [itc_scale * first[j] + itm[keys[j]] for j in top.tolist()]
                    row_scores.append(reranked_scores(first, second, top))
            lists.append(row_scores)
        per_query[d] = lists
        ranks[d] = [
            np.array([positive_rank(s, c.positive_index, ties) for s, c in zip(rs, r)], dtype=np.int64)
            for rs, r in zip(lists, cset.repeats)
        ]
        metrics.update(recall_metrics(ranks[d], d, negatives))
        tied = [
            tied_negatives(sc, c.positive_index) for rs, r in zip(lists, cset.repeats) for sc, c in zip(rs, r)
        ]
        metrics[names.tied(d, negatives)] = float(np.mean(tied))
    return ranks, per_query, metrics
