"""Tagging's frozen reference: a linear probe per column on the ImageNet teacher's pooled features.

    python experiments/pretrained/tag_probe.py --data ../shared/data/hm_fashion_11k/metadata.csv \
        --columns colour,pattern,garment_group,index_group --out runs/tag-probe

What does a frozen ImageNet model see in a product photo? EfficientNet-Lite0's 1280-d pooled
features (224 px, the teachers' cache), standardised, and one L2-regularised softmax regression
per column (``mvlt.train.teachers.probe``: full-batch L-BFGS). The L2 strength is chosen per column
on a held-out 15 % of the training products (a salted hash of the product id); the probe is then
fitted again on the whole training split and scored once on the test split
with the project's own tagging scores (accuracy, macro-F1, majority class). ``--modality text``
probes MiniLM's sentence features instead: how much of a column the description states;
``--modality image+text`` both side by side, what recognition (M-CR / S-CR) sees, photo and
description: ``--columns category,subcategory --modality image+text`` is the frozen pair's
recognition reference.
Writes ``metrics.json`` and prints one line per column.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mvlt.data import open_catalogue
from mvlt.data.columns import catalogue_columns
from mvlt.data.errors import DataError
from mvlt.exits import UsageError
from mvlt.tagging.evaluate import metric_name, score_attribute
from mvlt.train.linear_probe import choose, fit_probe, held_out, standardised
from mvlt.train.teachers.features import teacher_features

MODALITIES = ("image", "text", "image+text")


def features(catalogue: object, modality: str, cache: str | None) -> torch.Tensor:
    """The teacher features a probe reads: one modality's, or both side by side (``image+text``)."""
    cached = teacher_features(catalogue, cache)
    return torch.cat([cached[m] for m in modality.split("+")], 1)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a manifest with train and test splits")
    p.add_argument("--columns", required=True, help="comma-separated attribute columns")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--modality", choices=MODALITIES, default="image")
    p.add_argument("--cache", default=None, help="teacher feature cache (default $MVLT_CACHE_DIR/teachers)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    started = time.perf_counter()
    train, test = (open_catalogue(args.data, split=s) for s in ("train", "test"))
    train_values, test_values = (catalogue_columns(c, columns, "--columns") for c in (train, test))
    x_train, x_test = (features(c, args.modality, args.cache) for c in (train, test))
    x_train, x_test = standardised(x_train), standardised(x_test, reference=x_train)
    val = held_out(list(train.groups or train.product_ids))
    record: dict = {"name": f"frozen_{args.modality}_teacher_linear_probe", "columns": {}, "metrics": {}}
    for column in columns:
        labels = train_values.labels[column]
        index = {label: i for i, label in enumerate(labels)}
        y = torch.tensor([index.get(v, -1) for v in train_values.values[column]])
        known = y >= 0
        l2, val_acc = choose(x_train[known], y[known], val[known], len(labels))
        probe = fit_probe(x_train[known], y[known], len(labels), l2)
        with torch.no_grad():
            top1 = [labels[i] for i in probe(x_test).argmax(-1).tolist()]
        metrics, _ = score_attribute(column, {"probe": top1}, test_values.values[column], labels)
        record["metrics"].update(metrics)
        record["columns"][column] = {"l2": l2, "held_out_acc": val_acc}
        acc = metrics[metric_name(column, "acc_probe")]
        majority = metrics[metric_name(column, "acc_majority")]
        f1 = metrics[metric_name(column, "macro_f1_probe")]
        print(f"{column}: probe {100 * acc:.1f} % (macro-F1 {f1:.3f}) against majority {100 * majority:.1f} %"
              f" [L2 {l2:g}, held-out {100 * val_acc:.1f} %]", flush=True)  # fmt: skip
    record["minutes"] = (time.perf_counter() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, DataError, UsageError) as err:  # a bad path or column: say which, no traceback
        print(f"tag_probe: error: {err}", file=sys.stderr)
        sys.exit(2)
