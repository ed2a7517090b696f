"""Collect a ``gpu_session.py`` folder into ``docs/results.json`` and print the RESULTS.md tables.

    python experiments/hm/collect.py docs/results/hm-gpu --json docs/results.json

One entry per run: name, objectives, image size, budget (steps x batch = samples, wall time,
device), the commit, and the evaluator's metrics under their own names. Chance levels come from
the protocol (R@k = k / 101) and from the majority class of the training split.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import yaml

RUNS = {  # name -> (pre-training folder, fine-tuning folder or None, evaluation folder)
    "main": ("main", "main_ft", "main_eval"),
    "ablation_itm": ("abl_itm", None, "abl_itm_eval"),
    "ablation_itm_mir": ("abl_itm_mir", None, "abl_itm_mir_eval"),
    "ablation_itm_mlm": ("abl_itm_mlm", None, "abl_itm_mlm_eval"),
    "ablation_all": ("abl_all", None, "abl_all_eval"),
}
RETRIEVAL = ("tir_r1", "tir_r5", "tir_r10", "itr_r1", "itr_r5", "itr_r10")
SUFFIX = "_1p100_subcat"


def last_metrics(run: Path) -> dict:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def training(folder: Path, wall_s: float | None) -> dict:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    last = last_metrics(folder)
    weights = {k: v for k, v in config["loss_weights"].items() if v}
    objectives = config["objectives"] or list(weights)
    return {
        "objectives": objectives,
        "image_size": config["image_size"],
        "model": config["model"],
        "steps": last["step"],
        "batch_size": config["batch_size"],
        "samples": last["step"] * config["batch_size"],
        "epochs": last["epoch"],
        "wall_s": wall_s,
        "final_losses": {k: round(v, 4) for k, v in last.items() if k.startswith("loss/")},
        "config": {k: config[k] for k in ("lr", "warmup_ratio", "mask_ratio", "input_schedule", "seed")},
    }


def majority_baselines(manifest: Path) -> dict:
    """Accuracy of always answering the training split's most frequent class, on the test split."""
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for key, name in (("category", "mcr_acc"), ("subcategory", "scr_acc")):
        train = Counter(r[key] for r in rows if r["split"] == "train")
        test = [r[key] for r in rows if r["split"] == "test" and r[key] in train]
        majority = train.most_common(1)[0][0]
        out[name] = round(sum(label == majority for label in test) / len(test), 4)
    return out


def collect(folder: Path, manifest: Path) -> dict:
    session = json.loads((folder / "session.json").read_text())
    # gpu_session.py names its processes main_pretrain, main_finetune, abl_itm, ...
    wall = {
        k.replace("_pretrain", "").replace("_finetune", "_ft"): v["wall_s"]
        for k, v in session["runs"].items()
    }
    runs = []
    for name, (pre, fine, ev) in RUNS.items():
        if not (folder / ev / "metrics.json").is_file():
            continue
        metrics = json.loads((folder / ev / "metrics.json").read_text())
        protocol = metrics.pop("protocol", {})
        entry = {"name": name, "commit": session["commit"], "device": protocol.get("device")}
        entry["pretrain"] = training(folder / pre, wall.get(pre))
        if fine:
            entry["finetune"] = training(folder / fine, wall.get(fine))
        entry["metrics"] = metrics
        runs.append(entry)
    chance = {f"{k}{SUFFIX}": round(int(k.split("_r")[1]) / 101, 4) for k in RETRIEVAL}
    return {
        "source": str(folder),
        "data": "hm_fashion_11k (train split for pre-training and fine-tuning, test split for evaluation)",
        "chance": chance | majority_baselines(manifest),
        "runs": runs,
    }


def tables(result: dict) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["| run | objectives | steps x batch | TIR R@1/5/10 | ITR R@1/5/10 |", "|---|---|---|---|---|"]
    for run in result["runs"]:
        m, p = run["metrics"], run["pretrain"]
        tir = "/".join(pct(m[f"tir_r{k}{SUFFIX}"]) for k in (1, 5, 10))
        itr = "/".join(pct(m[f"itr_r{k}{SUFFIX}"]) for k in (1, 5, 10))
        budget = f"{p['steps']} x {p['batch_size']}"
        lines.append(f"| {run['name']} | {'+'.join(p['objectives'])} | {budget} | {tir} | {itr} |")
    c = result["chance"]
    lines.append(f"| chance | | | {'/'.join(pct(c[f'tir_r{k}{SUFFIX}']) for k in (1, 5, 10))} | same |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a gpu_session.py --out folder")
    p.add_argument("--manifest", type=Path, default=Path("../shared/data/hm_fashion_11k/metadata.csv"))
    p.add_argument("--json", type=Path, default=None, help="write the collected results here")
    args = p.parse_args(argv)
    for path, what in (
        (args.folder / "session.json", "a gpu_session.py --out folder"),
        (args.manifest, "the manifest"),
    ):
        if not path.is_file():
            p.error(f"{path}: not found ({what} is needed)")
    result = collect(args.folder, args.manifest)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(tables(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
