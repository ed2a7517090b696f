"""Score one checkpoint's fixed 1 + K lists with inference-time rules that need no teacher: the
image and its mirror image embedded together (``flip``), and a correction for *hubs*, candidates
that sit close to every query (a query bank of the training split's texts and photos, as
QB-Norm and CSLS use it). What each rule adds, on the same lists, from one encoder.

    python experiments/pretrained/rescoring.py --checkpoint RUN/train --data MANIFEST --split val \
        --candidates RUN/retrieval_candidates.json [--bank 4000] [--json OUT]

Hub correction, for text-to-image retrieval (image-to-text is the mirror): each candidate image
``i`` is scored ``cos(t, i) - beta * h(i)``, where ``h(i)`` is the mean cosine of ``i`` to its
``k`` nearest texts of the bank; ``beta = 0.5`` ranks as CSLS does. ``softmax`` scores
``cos(t, i) / tau - logsumexp_b cos(b, i) / tau`` over the whole bank instead (the inverted
softmax). Each rule runs with ITC alone and with ITM re-ranking its shortlist, as ``mvlt
evaluate --score itc+itm`` does. The bank never holds an evaluated product: it is drawn from the
training split.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mvlt.data import open_catalogue
from mvlt.data.image_cache import open_image_cache
from mvlt.eval.context import EvalContext
from mvlt.eval.retrieval import (
    load_candidates,
    pair_keys,
    positive_rank,
    recall_metrics,
    reranked_scores,
    resolve_candidates,
    shortlist,
)
from mvlt.eval.scoring import staged_pair_scorer
from mvlt.fileio import atomic_write_text
from mvlt.model import MVLT

Scores = dict[str, np.ndarray]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", required=True, help="catalogue manifest")
    p.add_argument("--split", default="test", help="the split the lists were drawn from")
    p.add_argument("--bank-split", default="train", help="the split the query bank is drawn from")
    p.add_argument("--bank", type=int, default=4000, help="bank size (rows drawn with seed 0)")
    p.add_argument("--candidates", type=Path, required=True)
    p.add_argument("--rerank-top", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    for flag, path in (("--checkpoint", args.checkpoint), ("--candidates", args.candidates)):
        if not path.exists():
            p.error(f"{flag} {path}: no such file or directory")
    if args.bank < 1:
        p.error(f"--bank must be >= 1, got {args.bank}")
    return args


def context(model: MVLT, catalogue: object) -> EvalContext:
    size = int(model.config.image_size)
    cache = open_image_cache(catalogue, size, "pad", "auto", progress=True)
    return EvalContext(model, catalogue, model.tokenizer, torch.device("cpu"), "fp32", size, "pad", 64,
                       2 << 30, False, cache)  # fmt: skip


@torch.inference_mode()
def embed(ctx: EvalContext, rows: list[int], flip: bool = False) -> Scores:
    """ITC embeddings of ``rows``: images (mirrored and plain averaged when ``flip``) and texts."""
    images, mirrored, texts = [], [], []
    for start in range(0, len(rows), 256):
        chunk = rows[start : start + 256]
        pixels = ctx.images(chunk)
        images.append(ctx.model.encode_images(pixels))
        if flip:
            mirrored.append(ctx.model.encode_images(pixels.flip(-1)))
        texts.append(ctx.model.encode_texts(*ctx.text_batch(chunk)))
    out = {"image": torch.cat(images), "text": torch.cat(texts)}
    if flip:
        out["image_flip"] = torch.nn.functional.normalize(out["image"] + torch.cat(mirrored), dim=-1)
    return {k: v.double().numpy() for k, v in out.items()}


def hubness(items: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine of each item to its ``k`` nearest bank entries."""
    sims = items @ bank.T
    return np.sort(sims, axis=1)[:, -k:].mean(1)


def log_mass(items: np.ndarray, bank: np.ndarray, scale: float) -> np.ndarray:
    """``logsumexp_b scale * cos(item, b)``: how much of the bank an item attracts."""
    z = scale * (items @ bank.T)
    top = z.max(1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(1, keepdims=True)))[:, 0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = MVLT.from_pretrained(args.checkpoint).eval()
    catalogue = open_catalogue(args.data, split=args.split)
    bank_catalogue = open_catalogue(args.data, split=args.bank_split)
    lists_file = load_candidates(args.candidates)
    cset = resolve_candidates(lists_file, catalogue.product_ids, catalogue.subcategories)
    lists = [c for r in cset.repeats for c in r]
    rows = sorted({row for c in lists for row in c.rows or ()})
    at = {row: i for i, row in enumerate(rows)}
    ctx, bank_ctx = context(model, catalogue), context(model, bank_catalogue)
    items = embed(ctx, rows, flip=True)
    draw = np.random.default_rng(0).permutation(len(bank_catalogue))[: args.bank]
    bank = embed(bank_ctx, sorted(draw.tolist()), flip=True)
    scale = 1.0 / float(model.itc_head.clamped_temperature().detach())
    itm_cache: dict[tuple[int, int], float] = {}
    itm_scorer = staged_pair_scorer(model, ctx, None, 256)

    def itm(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
        todo = [p for p in dict.fromkeys(pairs) if p not in itm_cache]
        if todo:
            itm_cache.update(itm_scorer(todo))
        return itm_cache

    def evaluate(
        image_key: str,
        bank_image_key: str,
        rule: Callable[..., tuple[np.ndarray, np.ndarray]],
        itm_weight: float = 1.0,
        top_k: int = args.rerank_top,
    ):
        """R@k of ITC and ITC+ITM (``itm_weight`` x the ITM log-odds on the ITC top ``top_k``)
        when candidate images / texts are scored by ``rule``."""
        img, txt = items[image_key], items["text"]
        image_penalty, text_penalty = rule(img, txt, bank[bank_image_key], bank["text"])
        out = {}
        for scorer in ("itc", "itc+itm"):
            ranks = {"tir": [], "itr": []}
            needed = []
            firsts = []
            for c in lists:
                q = at[c.query_row]
                cand = np.array([at[r] for r in c.rows or ()])
                tir = txt[q] @ img[cand].T - image_penalty[cand]
                itr = img[q] @ txt[cand].T - text_penalty[cand]
                firsts.append((c, tir, itr))
                if scorer == "itc+itm":
                    for d, s in (("tir", tir), ("itr", itr)):
                        keys = pair_keys(c, d)
                        needed += [keys[j] for j in shortlist(s, c.positive_index, top_k)]
            table = itm(needed) if scorer == "itc+itm" else {}
            for c, tir, itr in firsts:
                for d, s in (("tir", tir), ("itr", itr)):
                    if scorer == "itc+itm":
                        top = shortlist(s, c.positive_index, top_k)
                        keys = pair_keys(c, d)
                        second = np.zeros_like(s)
                        second[top] = [scale * s[j] + itm_weight * table[keys[j]] for j in top.tolist()]
                        s = reranked_scores(s, second, top)
                    ranks[d].append(positive_rank(s, c.positive_index))
            for d in ("tir", "itr"):
                metrics = recall_metrics([np.array(ranks[d])], d, cset.negatives)
                for k in (1, 5, 10):
                    name = next(n for n in metrics if n.startswith(f"{d}_r{k}_") and not n.endswith("_se"))
                    out[f"{scorer}_{d}_r{k}"] = metrics[name]
        return out

    def plain(img, txt, bank_img, bank_txt):
        return np.zeros(len(img)), np.zeros(len(txt))

    def hub(k: int, beta: float):
        def rule(img, txt, bank_img, bank_txt):
            return beta * hubness(img, bank_txt, k), beta * hubness(txt, bank_img, k)

        return rule

    def inverted_softmax(t: float):
        def rule(img, txt, bank_img, bank_txt):
            width = t / scale
            return width * log_mass(img, bank_txt, 1 / width), width * log_mass(txt, bank_img, 1 / width)

        return rule

    variants: dict[str, tuple] = {"plain": ("image", plain), "flip": ("image_flip", plain)}
    for weight in (0.5, 2.0):
        variants[f"itm_x{weight:g}"] = ("image", plain, weight)
    variants["top32"] = ("image", plain, 1.0, 32)
    for image_key, tag in (("image", ""), ("image_flip", "flip+")):
        for k in (10, 50):
            for beta in (0.25, 0.5, 1.0):
                variants[f"{tag}hub_k{k}_b{beta:g}"] = (image_key, hub(k, beta))
        for t in (1.0, 2.0):
            variants[f"{tag}softmax_t{t:g}"] = (image_key, inverted_softmax(t))
    rows_out = []
    for name, (image_key, rule, *itm_options) in variants.items():
        bank_key = "image_flip" if image_key == "image_flip" else "image"
        result = {"variant": name, **evaluate(image_key, bank_key, rule, *itm_options)}
        rows_out.append(result)
        shown = " ".join(
            f"{s} {100 * result[f'{s}_tir_r5']:.1f}/{100 * result[f'{s}_itr_r5']:.1f}"
            for s in ("itc", "itc+itm")
        )
        print(f"{name:24s} R@5 {shown}", flush=True)
    record = {
        "command": "python experiments/pretrained/rescoring.py " + " ".join(sys.argv[1:]),
        "split": args.split,
        "queries": len(lists),
        "bank": {"split": args.bank_split, "rows": len(draw)},
        "rows": rows_out,
    }
    if args.json:
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
