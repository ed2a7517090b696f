"""What a trained MVLT's features know about sub-categories, against what its recognition head says.

    python experiments/pretrained/student_probe.py --checkpoint RUN/finetune \
        --data /tmp/hm-val/metadata.csv --split val --out runs/student-probe.json

The diagnostic behind ``--fit-heads`` (DESIGN.md). Every clean pair of the training split and of
``--split`` is encoded once: the joint pass's [CLS] (what the recognition heads read) and the
unimodal passes' ITC embeddings (image and text side by side). One linear probe per feature set
(``mvlt.train.linear_probe``: L2 chosen on 15 % of the training products held out, then fitted on
all of them) is scored on ``--split``, beside the checkpoint's own sub-category head when it has
one. ``--data`` must be a manifest with that split: ``docs/results/tagging/make_val_slice.py``
writes the validation slice that design choices are made on.

``--teacher-weights 0.5,1`` adds probes on [CLS] fitted to soft targets: each training row's label
mixed with the frozen teacher pair's sub-category probabilities at that weight (a probe on the
teachers' image and text features side by side, out of fold: ``mvlt.train.teachers.probe``), read
from the teachers' feature cache (``--teacher-cache``). Knowledge distillation into the read-out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mvlt.data import open_catalogue
from mvlt.data.batches import PairDataset
from mvlt.data.image_cache import open_image_cache
from mvlt.data.labels import LabelMaps
from mvlt.model import MVLT
from mvlt.train.linear_probe import choose, fit_probe, held_out, standardised
from mvlt.train.teachers.features import teacher_features
from mvlt.train.teachers.probe import out_of_fold_probabilities

FEATURES = ("cls", "itc", "cls+itc")


@torch.no_grad()
def encode(model: MVLT, dataset: PairDataset) -> dict[str, torch.Tensor]:
    """Per row of ``dataset`` (fp32): [CLS], ITC embeddings (image ; text), label, the head's guess."""
    parts: dict[str, list[torch.Tensor]] = {"cls": [], "itc": [], "y": [], "head": []}
    for batch in DataLoader(dataset, batch_size=64, collate_fn=dataset.collate):
        images, ids, mask = batch["images"], batch["input_ids"], batch["attention_mask"]
        cls = model.forward_cls(images, ids, mask)
        itc = torch.cat((model.encode_images(images), model.encode_texts(ids, mask)), 1)
        parts["cls"].append(cls.float())
        parts["itc"].append(itc.float())
        parts["y"].append(batch["subcategory_labels"])
        if model.subcategory_head is not None:
            parts["head"].append(model.recognition_logits(cls).subcategory.argmax(-1))
    out = {k: torch.cat(v) for k, v in parts.items() if v}
    out["cls+itc"] = torch.cat((out["cls"], out["itc"]), 1)
    return out


def soft_target_probes(
    fit: dict[str, torch.Tensor],
    scored: dict[str, torch.Tensor],
    train: object,
    known: torch.Tensor,
    groups: list,
    classes: int,
    weights: list[float],
    cache: str | None,
) -> dict[str, dict[str, float]]:
    """Probes on [CLS] fitted to labels mixed with the teacher pair's out-of-fold probabilities."""
    cached = teacher_features(train, cache)
    teacher_x = torch.cat((cached["image"], cached["text"]), 1)
    all_groups = list(train.groups or train.product_ids)
    teacher, teacher_record = out_of_fold_probabilities(teacher_x, fit["y"], classes, all_groups)
    accuracy = teacher_record["out_of_fold_acc"]
    print(f"teacher pair: out-of-fold S-CR {100 * accuracy:.1f} % on train", flush=True)
    y = fit["y"][known]
    x, x_scored = standardised(fit["cls"][known]), standardised(scored["cls"], fit["cls"][known])
    scored_known = scored["y"] >= 0
    records: dict[str, dict[str, float]] = {"teacher_pair": teacher_record}
    for weight in weights:
        targets = (1 - weight) * torch.nn.functional.one_hot(y, classes).float() + weight * teacher[known]
        l2, held_out_acc = choose(x, y, held_out(groups), classes, targets=targets)
        probe = fit_probe(x, targets, classes, l2)
        with torch.no_grad():
            right = probe(x_scored).argmax(-1) == scored["y"]
        accuracy = float(right[scored_known].float().mean())
        records[f"probe_cls_teacher{weight:g}"] = {"l2": l2, "held_out_acc": held_out_acc, "acc": accuracy}
        print(f"cls, teacher weight {weight:g}: probe S-CR {100 * accuracy:.1f} % (L2 {l2:g})", flush=True)
    return records


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", required=True, help="a manifest with a train split and --split")
    p.add_argument("--split", default="val")
    p.add_argument("--image-cache", default=None, help="decoded-image cache folder (default: decode)")
    p.add_argument("--out", type=Path, required=True, help="write the result here (JSON)")
    p.add_argument("--teacher-weights", default="", help="comma-separated weights of the teacher targets")
    p.add_argument("--teacher-cache", default=None, help="teacher feature cache folder")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    try:
        weights = [float(w) for w in args.teacher_weights.split(",") if w.strip()]
    except ValueError:
        weights = [float("nan")]
    if any(not 0 < w <= 1 for w in weights):
        raise ValueError(f"--teacher-weights: each weight must be in (0, 1], got {args.teacher_weights!r}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = MVLT.from_pretrained(args.checkpoint).eval()
    train = open_catalogue(args.data, split="train")
    maps = model.label_maps or LabelMaps.from_catalogue(train)
    size = model.config.image_size
    encoded = {}
    for split, catalogue in (("train", train), (args.split, open_catalogue(args.data, split=args.split))):
        cache = open_image_cache(catalogue, size, "pad", args.image_cache) if args.image_cache else None
        dataset = PairDataset(catalogue, model.tokenizer, label_maps=maps, image_size=size, image_cache=cache)
        encoded[split] = encode(model, dataset)
    fit, scored = encoded["train"], encoded[args.split]
    known, scored_known = fit["y"] >= 0, scored["y"] >= 0
    groups = [g for g, k in zip(train.groups or train.product_ids, known.tolist()) if k]
    classes = maps.num_subcategories
    record: dict = {"checkpoint": str(args.checkpoint), "split": args.split, "items": int(scored_known.sum())}
    if "head" in scored:
        record["head_acc"] = float((scored["head"] == scored["y"])[scored_known].float().mean())
    for name in FEATURES:
        x, x_scored = standardised(fit[name][known]), standardised(scored[name], fit[name][known])
        l2, held_out_acc = choose(x, fit["y"][known], held_out(groups), classes)
        probe = fit_probe(x, fit["y"][known], classes, l2)
        with torch.no_grad():
            right = probe(x_scored).argmax(-1) == scored["y"]
        accuracy = float(right[scored_known].float().mean())
        record[f"probe_{name}"] = {"l2": l2, "held_out_acc": held_out_acc, "acc": accuracy}
        print(f"{name}: probe S-CR {100 * record[f'probe_{name}']['acc']:.1f} % (L2 {l2:g})", flush=True)
    if weights:
        soft = soft_target_probes(fit, scored, train, known, groups, classes, weights, args.teacher_cache)
        record.update(soft)
    if "head_acc" in record:
        print(f"the checkpoint's sub-category head: S-CR {100 * record['head_acc']:.1f} %")
    record["minutes"] = (time.perf_counter() - started) / 60
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:  # a bad path or split: say which, no traceback
        print(f"student_probe: error: {err}", file=sys.stderr)
        sys.exit(2)
