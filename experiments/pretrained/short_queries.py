"""Short queries, as shoppers type them, over the whole test catalogue: precision@10 and nDCG@10.

    python experiments/pretrained/short_queries.py --data ../shared/data/hm_fashion_11k/metadata.csv \
        --checkpoint runs/demo-hm-teachers/model --baseline-dim 128 --out runs/short-queries.json

The 1 + 100 lists score long catalogue descriptions; people type "black trousers". The queries
are made from the catalogue's own attribute columns, never from its descriptions: every distinct
``"{colour} {subcategory}"`` of the test split (e.g. "dark blue trousers") and, for patterned
products, ``"{pattern} {colour} {subcategory}"`` ("stripe white t-shirt"), lower-cased. A test
product is relevant to a query when it has those attribute values. Each query ranks every test
product's photo by the ITC similarity to the query text (what ``mvlt search`` does before
re-ranking), so the model must find the products from their images alone.

``--split val`` scores a validation slice's held-out products instead
(``docs/results/tagging/make_val_slice.py``), for choosing between designs without reading test.
``--hub-bank`` also scores each checkpoint with each photo's pull on a bank of queries taken out
(the inverted softmax of ``rescoring.py``): the bank is the training split's own attribute queries,
so no scored product is in it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

K = 10


def attribute_queries(rows: list[dict[str, str]]) -> dict[str, set[int]]:
    """Query text -> the rows (positions in ``rows``) relevant to it."""
    queries: dict[str, set[int]] = defaultdict(set)
    for i, row in enumerate(rows):
        colour, sub, pattern = (row.get(c, "").strip().lower() for c in ("colour", "subcategory", "pattern"))
        if not colour or not sub or colour in ("other", "unknown") or sub in ("other", "unknown"):
            continue
        queries[f"{colour} {sub}"].add(i)
        if pattern and pattern not in ("solid", "other", "unknown"):
            queries[f"{pattern} {colour} {sub}"].add(i)
    return dict(queries)


def ranking_metrics(scores: np.ndarray, relevant: set[int], k: int = K) -> tuple[float, float]:
    """Precision@k and nDCG@k (binary relevance) of one query's scores over all items."""
    top = np.argsort(-scores, kind="stable")[:k]
    gains = np.array([1.0 if int(i) in relevant else 0.0 for i in top])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = discounts[: min(k, len(relevant))].sum()
    return float(gains.mean()), float((gains * discounts[: len(gains)]).sum() / ideal) if ideal else 0.0


def evaluate(text_emb: torch.Tensor, image_emb: torch.Tensor, queries: dict[str, set[int]]) -> dict:
    """Mean precision@10 and nDCG@10 over the queries (``text_emb`` row i = query i in order)."""
    scores = (text_emb.float() @ image_emb.float().t()).numpy()
    p, n = zip(*(ranking_metrics(scores[i], rel) for i, rel in enumerate(queries.values())))
    return {"queries": len(queries), "precision_at_10": float(np.mean(p)), "ndcg_at_10": float(np.mean(n)),
            "precision_at_10_se": float(np.std(p, ddof=1) / math.sqrt(len(p)))}  # fmt: skip


def split_rows(manifest: Path, catalogue) -> list[dict[str, str]]:
    """The manifest's rows of the scored split in the catalogue's order (matched by product id)."""
    by_id = {}
    with manifest.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            by_id.setdefault(row["product_id"], row)
    return [by_id[p] for p in catalogue.product_ids]


def mvlt_embeddings(
    checkpoint: Path, catalogue, texts: list[str], bank: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The queries' and the photos' ITC embeddings and, with a ``bank`` of texts, each photo's
    inverted-softmax pull on it (``rescoring.log_mass``, in cosine units)."""
    from mvlt.data import encode_texts, prepare_image
    from mvlt.model import MVLT

    model = MVLT.from_pretrained(checkpoint).eval()
    size = model.config.image_size
    images = []
    with torch.inference_mode():
        for start in range(0, len(catalogue), 64):
            rows = range(start, min(len(catalogue), start + 64))
            pixels = torch.stack([prepare_image(catalogue.load_image(i), size) for i in rows])
            images.append(model.encode_images(pixels))
        batch = encode_texts(model.tokenizer, texts)
        text, image = model.encode_texts(batch["input_ids"], batch["attention_mask"]), torch.cat(images)
        if bank is None:
            return text, image, None
        from rescoring import log_mass

        batch = encode_texts(model.tokenizer, bank)
        bank_emb = model.encode_texts(batch["input_ids"], batch["attention_mask"]).double().numpy()
        width = float(model.itc_head.clamped_temperature().detach())
    return text, image, torch.from_numpy(width * log_mass(image.double().numpy(), bank_emb, 1.0 / width))


def corrected(
    text: torch.Tensor, image: torch.Tensor, pull: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings one wider whose dot product is ``cos(query, photo) - pull(photo)``."""
    ones = torch.ones(len(text), 1, dtype=torch.double)
    return torch.cat((text.double(), ones), 1), torch.cat((image.double(), -pull[:, None]), 1)


def baseline_embeddings(
    data: str, dim: int, catalogue, texts: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    from mvlt.data import open_catalogue
    from mvlt.train.teachers.dual import fit_dual_encoder
    from mvlt.train.teachers.features import teacher_features, text_features

    train = open_catalogue(data, split="train")
    feats = teacher_features(train)
    pair, _ = fit_dual_encoder(feats["image"], feats["text"], list(train.groups or train.product_ids), dim)
    with torch.no_grad():
        return pair.embed_texts(text_features(texts, progress=False)), pair.embed_images(
            teacher_features(catalogue)["image"]
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", type=Path, action="append", default=[], help="MVLT checkpoint(s) to score")
    p.add_argument("--baseline-dim", type=int, default=None, help="also score the frozen dual encoder")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--split", default="test", help="the split whose products are ranked (val for designs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--hub-bank", action="store_true", help="also score with the hub correction (train queries)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mvlt.data import open_catalogue

    test = open_catalogue(args.data, split=args.split)
    queries = attribute_queries(split_rows(Path(args.data), test))
    texts = list(queries)
    results = {}
    bank = None
    if args.hub_bank:
        bank = sorted(
            attribute_queries(split_rows(Path(args.data), open_catalogue(args.data, split="train")))
        )
    for checkpoint in args.checkpoint:
        text, image, pull = mvlt_embeddings(checkpoint, test, texts, bank)
        results[str(checkpoint)] = evaluate(text, image, queries)
        if pull is not None:
            name = f"{checkpoint} + hub correction ({len(bank or [])} train queries)"
            results[name] = evaluate(*corrected(text, image, pull), queries)
    if args.baseline_dim:
        results[f"baseline_{args.baseline_dim}d"] = evaluate(
            *baseline_embeddings(args.data, args.baseline_dim, test, texts), queries
        )
    for name, r in results.items():
        print(f"{name}: {r['queries']} queries, P@10 {100 * r['precision_at_10']:.1f} ± "
              f"{100 * r['precision_at_10_se']:.1f} %, nDCG@10 {100 * r['ndcg_at_10']:.1f} %")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"examples": texts[:10], "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
