"""Choose ``--neighbours-k``, the votes' temperature and ``--neighbour-weight`` on a validation split.

    python experiments/tagging/neighbour_sweep.py --checkpoint CKPT --data /tmp/hm-val/metadata.csv \
        --split val --out sweep.json

One image pass over the memory (``--memory-split``, default train) and one over the scored split,
then every (k, temperature, weight) of the grids scored from the cached features, as
``mvlt evaluate --task tagging --neighbours`` would score it (top-1 accuracy of the head columns,
image only). Writes every setting's accuracies, the heads alone and the best setting by mean
accuracy over the columns. Never point ``--split`` at a test split: this chooses settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from mvlt.data.columns import catalogue_columns  # noqa: E402
from mvlt.data.sources import open_catalogue  # noqa: E402
from mvlt.model import MVLT  # noqa: E402
from mvlt.tagging.neighbours import build_neighbours, catalogue_features, label_targets  # noqa: E402
from mvlt.tagging.tagger import head_labels  # noqa: E402


def numbers(text: str, kind: type) -> list:
    return [kind(v) for v in text.split(",") if v.strip()]


def scored_split(model: MVLT, catalogue, heads: dict, batch_size: int) -> tuple[torch.Tensor, dict, dict]:
    """The split's pooled image features, the heads' probabilities and the label ids (-1: unscored)."""
    rows, features, _ = catalogue_features(model, catalogue, batch_size=batch_size)
    with torch.inference_mode():
        probabilities = {c: v.softmax(-1) for c, v in model.tag_logits_from(features).items()}
    values = catalogue_columns(catalogue, list(heads)).values
    truth = {c: label_targets([values[c][r] for r in rows], heads[c]) for c in heads}
    return features, probabilities, truth


def accuracy(probabilities: dict, truth: dict) -> dict[str, float]:
    out = {}
    for column, target in truth.items():
        known = target >= 0
        out[column] = (probabilities[column].argmax(1)[known] == target[known]).float().mean().item()
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint with tag heads")
    p.add_argument("--data", required=True, help="a manifest with the memory's split and the scored split")
    p.add_argument("--split", required=True, help="the split scored (a validation split)")
    p.add_argument("--memory-split", default="train", help="the split that votes (default train)")
    p.add_argument("--k", default="5,10,20,50", help="comma-separated k grid")
    p.add_argument("--temperature", default="0.02,0.05,0.1", help="comma-separated temperature grid")
    p.add_argument("--weight", default="0.25,0.5,0.75,1", help="comma-separated blend-weight grid")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True, help="JSON of every setting and the best")
    args = p.parse_args(argv)
    if args.split == args.memory_split:
        p.exit(2, f"--split {args.split}: the scored split cannot also be the memory\n")
    if not args.checkpoint.is_dir():
        p.exit(2, f"--checkpoint {args.checkpoint}: no such checkpoint directory\n")
    if not Path(args.data).is_file():
        p.exit(2, f"--data {args.data}: no such manifest\n")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = MVLT.from_pretrained(args.checkpoint).eval()
    heads = head_labels(model)
    if not heads:
        p.exit(2, f"--checkpoint {args.checkpoint}: no tag heads\n")
    memory, _ = build_neighbours(
        model, open_catalogue(args.data, split=args.memory_split), heads, batch_size=args.batch_size
    )
    pooled, heads_only, truth = scored_split(
        model, open_catalogue(args.data, split=args.split), heads, args.batch_size
    )
    settings = []
    for k in numbers(args.k, int):
        for temperature in numbers(args.temperature, float):
            votes = dataclasses.replace(memory, k=k, temperature=temperature).probabilities(pooled)
            for weight in numbers(args.weight, float):
                blend = {c: (1 - weight) * heads_only[c] + weight * votes[c] for c in heads}
                acc = accuracy(blend, truth)
                settings.append({"k": k, "temperature": temperature, "weight": weight, "accuracy": acc,
                                 "mean": sum(acc.values()) / len(acc)})  # fmt: skip
    base = accuracy(heads_only, truth)
    best = max(settings, key=lambda s: s["mean"])
    record = {
        "checkpoint": str(args.checkpoint), "data": args.data, "split": args.split,
        "memory_split": args.memory_split, "memory_photos": len(memory),
        "heads": {"accuracy": base, "mean": sum(base.values()) / len(base)},
        "best": best, "settings": settings, "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    cols = " ".join(f"{c} {100 * v:.1f}" for c, v in base.items())
    print(f"heads alone: {cols} (mean {100 * record['heads']['mean']:.2f})")
    cols = " ".join(f"{c} {100 * v:.1f}" for c, v in best["accuracy"].items())
    setting = f"k={best['k']} T={best['temperature']} w={best['weight']}"
    print(f"best {setting}: {cols} (mean {100 * best['mean']:.2f})")
    return record


if __name__ == "__main__":
    main()
