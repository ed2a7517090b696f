"""Scoring catalogue pairs with a model: ITM scorers (whole passes, or staged for a model that
fuses late) and ITC embeddings, each image and text embedded once.

The retrieval protocol (:mod:`mvlt.eval.retrieval`) decides which pairs to score; this module
scores them, through small protocols (``PairInputs``, ``ItemInputs``, ``Embedder``) that
:class:`~mvlt.eval.context.EvalContext` and the search index implement.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

SCORES = ("log_odds", "probability")
"""What the ITM scorer outputs."""
Scorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(images B x 3 x H x W, input_ids B x L, attention_mask B x L) -> B scores``, higher = the text
more likely describes the image (match probabilities, ITM log-odds, or a test's fake)."""


class PairInputs(Protocol):
    """Makes model inputs from catalogue rows (:class:`~mvlt.eval.context.EvalContext` is one)."""

    def token_ids(self, row: int) -> list[int]: ...

    def batch(self, image_rows: Sequence[int], text_rows: Sequence[int]) -> tuple[torch.Tensor, ...]: ...


class ItemInputs(Protocol):
    """Model inputs of catalogue rows, one item at a time (:class:`~mvlt.eval.context.EvalContext` is one)."""

    def images(self, rows: Sequence[int]) -> torch.Tensor: ...

    def text_batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]: ...


PairScorer = Callable[[Iterable[tuple[int, int]]], dict[tuple[int, int], float]]
"""Scores ``(image_row, text_row)`` pairs (:func:`staged_pair_scorer` makes one)."""


class Embedder(Protocol):
    """Unit-length ITC embeddings of catalogue rows (:func:`model_embedder` makes one)."""

    def images(self, rows: Sequence[int]) -> torch.Tensor: ...

    def texts(self, rows: Sequence[int]) -> torch.Tensor: ...


def score_pairs(
    pairs: Iterable[tuple[int, int]],
    inputs: PairInputs,
    scorer: Scorer,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[tuple[int, int], float]:
    """Score each ``(image_row, text_row)`` pair once, in batches of similar text length (less padding)."""
    order = sorted(pairs, key=lambda p: (len(inputs.token_ids(p[1])), p[1], p[0]))
    scores: dict[tuple[int, int], float] = {}
    bar = tqdm(total=len(order), desc="scoring pairs", unit="pair", disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        images, ids, mask = inputs.batch([p[0] for p in chunk], [p[1] for p in chunk])
        probs = scorer(images, ids, mask).detach().float().cpu().reshape(-1)
        if probs.numel() != len(chunk):
            raise ValueError(f"the scorer returned {probs.numel()} scores for a batch of {len(chunk)} pairs")
        scores.update(zip(chunk, probs.tolist()))
        bar.update(len(chunk))
    bar.close()
    return scores


def model_scorer(model: Any, kind: str = "log_odds", autocast: Callable[[], Any] | None = None) -> Scorer:
    """The evaluator's scorer: ``model.match_score`` (ITM log-odds, default) or
    ``model.match_probability``; both run the ITM path only, the head in fp32.

    ``autocast`` (a context-manager factory) wraps the call.
    """
    if kind not in SCORES:
        raise ValueError(f"--score must be one of {SCORES}, got {kind!r}")
    context = autocast or contextlib.nullcontext

    def probability(images: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), context():
            return model.match_probability(images, input_ids, mask)

    def log_odds(images: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), context():
            return model.match_score(images, input_ids, mask)

    return log_odds if kind == "log_odds" else probability


def staged_pair_scorer(
    model: Any,
    inputs: ItemInputs,
    autocast: Callable[[], Any] | None = None,
    batch_size: int = 64,
    progress: bool = False,
    cached_texts: int = 4096,
) -> PairScorer:
    """ITM log-odds of pairs for a model that fuses late (``fusion_stage > 1``): the stages before
    fusion run once per image and per text (``model.unimodal_features``), the joint stages once
    per pair (``model.match_score_joint``). The scores are ``model.match_score``'s; a pair costs
    the joint stages plus its share of two unimodal passes instead of a whole encoder pass.

    Pairs go in image order, ``batch_size`` at a time: the images of a batch are encoded together
    and each text's tokens are kept (``cached_texts`` of them, least recently used out).
    """
    context = autocast or contextlib.nullcontext
    texts: OrderedDict[int, torch.Tensor] = OrderedDict()

    def text_tokens(rows: list[int]) -> list[torch.Tensor]:
        todo = [r for r in dict.fromkeys(rows) if r not in texts]
        if todo:
            ids, mask = inputs.text_batch(todo)
            _, tokens = model.unimodal_features(input_ids=ids, attention_mask=mask)
            for i, (row, length) in enumerate(zip(todo, mask.sum(1).tolist())):
                texts[row] = tokens[i, : int(length)]
        for row in rows:
            texts.move_to_end(row)
        out = [texts[r] for r in rows]
        while len(texts) > max(cached_texts, len(rows)):
            texts.popitem(last=False)
        return out

    def score(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], float]:
        order = sorted(set(pairs))
        scores: dict[tuple[int, int], float] = {}
        bar = tqdm(total=len(order), desc="scoring pairs", unit="pair", disable=not progress, leave=False)
        with torch.inference_mode(), context():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                image_rows = list(dict.fromkeys(p[0] for p in chunk))
                visual, _ = model.unimodal_features(images=inputs.images(image_rows))
                at = {row: i for i, row in enumerate(image_rows)}
                tokens = text_tokens([p[1] for p in chunk])
                width = max(t.shape[0] for t in tokens)
                text = visual.new_zeros(len(chunk), width, tokens[0].shape[1], dtype=tokens[0].dtype)
                mask = torch.zeros(len(chunk), width, dtype=torch.long, device=visual.device)
                for i, t in enumerate(tokens):
                    text[i, : t.shape[0]], mask[i, : t.shape[0]] = t, 1
                index = torch.tensor([at[p[0]] for p in chunk], device=visual.device)
                values = model.match_score_joint(visual[index], text, mask).float().cpu().tolist()
                scores.update(zip(chunk, values))
                bar.update(len(chunk))
        bar.close()
        return scores

    return score


def model_embedder(
    model: Any,
    inputs: ItemInputs,
    batch_size: int = 64,
    autocast: Callable[[], Any] | None = None,
    mirror: bool = False,
) -> Embedder:
    """``model.encode_images`` / ``encode_texts`` over ``inputs`` (an ``EvalContext``), in batches,
    without autograd (a graph kept per batch would hold every batch's activations). ``mirror``:
    each photo's embedding is the normalised sum of its own and its mirror image's (``--mirror``)."""
    context = autocast or contextlib.nullcontext

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        embedding = model.encode_images(pixels).float()
        if mirror:
            embedding = F.normalize(embedding + model.encode_images(pixels.flip(-1)).float(), dim=-1)
        return embedding

    class _Embedder:
        def images(self, rows: Sequence[int]) -> torch.Tensor:
            out = []
            for start in range(0, len(rows), batch_size):
                with torch.inference_mode(), context():
                    out.append(encode(inputs.images(rows[start : start + batch_size])))
            return torch.cat(out).cpu()

        def texts(self, rows: Sequence[int]) -> torch.Tensor:
            out = []
            for start in range(0, len(rows), batch_size):
                with torch.inference_mode(), context():
                    out.append(
                        model.encode_texts(*inputs.text_batch(rows[start : start + batch_size])).float()
                    )
            return torch.cat(out).cpu()

    return _Embedder()


def embedding_scores(pairs: Iterable[tuple[int, int]], embedder: Embedder) -> dict[tuple[int, int], float]:
    """ITC cosine of each ``(image_row, text_row)`` pair: each image and text is embedded once."""
    pairs = list(pairs)
    image_rows = sorted({p[0] for p in pairs})
    text_rows = sorted({p[1] for p in pairs})
    images, texts = embedder.images(image_rows), embedder.texts(text_rows)
    img_at = {r: i for i, r in enumerate(image_rows)}
    txt_at = {r: i for i, r in enumerate(text_rows)}
    a = torch.tensor([img_at[p[0]] for p in pairs], dtype=torch.long)
    b = torch.tensor([txt_at[p[1]] for p in pairs], dtype=torch.long)
    values = (images[a].double() * texts[b].double()).sum(1).tolist()
    return dict(zip(pairs, values))
