"""How much of a tag column do the catalogue's other columns decide? A lookup table, not a model.

    python experiments/tagging/column_lookup.py --data ../shared/data/hm_fashion_11k/metadata.csv \
        --target index_group --given garment_group --given garment_group,subcategory,colour,pattern \
        --out docs/results/tagging-neighbours/column_lookup.json

Each test row is given the most common ``--target`` value among the training rows that share its
``--given`` values; where no training row shares them all, the longest prefix of ``--given`` that
some training row shares (down to the training split's majority). With visible
attributes as ``--given`` (garment group, colour, pattern), this is what a tagger that knew them
perfectly from the photo, and nothing else, would score: where it is close to the majority class,
the column is a line of business that the visible attributes do not decide. One row per product
id (the first), as the tagging evaluation scores; empty target values are left out and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from mvlt.data.columns import read_manifest_rows  # noqa: E402


def split_rows(path: Path, split: str) -> list[dict[str, str]]:
    """The manifest's rows of ``split``, one per product id (its first row)."""
    _, rows = read_manifest_rows(path)
    seen: set[str] = set()
    out = []
    for row in rows:
        key = row.get("product_id") or row.get("image", "")
        if row.get("split") == split and key not in seen:
            seen.add(key)
            out.append(row)
    return out


def lookup_accuracy(train: list[dict], test: list[dict], target: str, given: list[str]) -> dict:
    """Test accuracy of predicting ``target`` by the training majority per ``given`` values,
    backing off to shorter prefixes of ``given`` for combinations no training row has."""
    train = [r for r in train if r.get(target)]
    scored = [r for r in test if r.get(target)]
    table: dict[tuple, Counter] = defaultdict(Counter)
    for row in train:
        key = tuple(row.get(c, "") for c in given)
        for n in range(len(given) + 1):
            table[key[:n]][row[target]] += 1
    hits = unseen = 0
    for row in scored:
        key = tuple(row.get(c, "") for c in given)
        unseen += key not in table
        votes = next(table[key[:n]] for n in range(len(given), -1, -1) if key[:n] in table)
        hits += votes.most_common(1)[0][0] == row[target]
    return {
        "given": given, "accuracy": hits / len(scored), "items": len(scored),
        "unseen_combinations": unseen, "empty_target": len(test) - len(scored),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a manifest with train and test splits")
    p.add_argument("--target", required=True, help="the column to predict")
    p.add_argument("--given", action="append", required=True, help="comma-separated columns (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    if not args.data.is_file():
        p.exit(2, f"--data {args.data}: no such file\n")
    train, test = split_rows(args.data, "train"), split_rows(args.data, "test")
    header = set(read_manifest_rows(args.data)[0])
    givens = [[c.strip() for c in g.split(",") if c.strip()] for g in args.given]
    missing = sorted({args.target, *(c for g in givens for c in g)} - header)
    if missing:
        has = ", ".join(sorted(header))
        p.exit(2, f"--data {args.data}: no column {', '.join(missing)} (it has {has})\n")
    if not train or not test:
        p.exit(2, f"--data {args.data}: needs rows in both the train and the test split\n")
    record = {
        "data": str(args.data), "target": args.target,
        "majority": lookup_accuracy(train, test, args.target, [])["accuracy"],
        "lookups": [lookup_accuracy(train, test, args.target, g) for g in givens],
    }  # fmt: skip
    print(f"{args.target}: majority class {100 * record['majority']:.1f} %")
    for r in record["lookups"]:
        given, unseen = "+".join(r["given"]), r["unseen_combinations"]
        print(f"  given {given}: {100 * r['accuracy']:.1f} % ({unseen} combinations unseen in training)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
