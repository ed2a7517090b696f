"""``mvlt tag``: tags for a folder of photos or a catalogue, from a checkpoint's fine-tuned tag heads
and zero-shot vocabularies, and (``--evaluate``) how well they match the catalogue's own columns.

Every flag is checked before the model loads, so a mistake fails at once (exit 2); what the flags
point at (checkpoint, folder, manifest, photos) fails with exit 1, naming it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from ..exits import ERRORS, UsageError, count_arg, fail, positive_float_arg
from .vocabulary import DEFAULT_TEMPLATE

log = logging.getLogger("mvlt.tagging")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tag",
        help="attribute tags (colour, pattern...) for photos: fine-tuned tag heads and zero-shot",
        description="Tag photos from the image alone: with the checkpoint's tag heads (mvlt finetune "
        "--labels) and with every --zero-shot attribute, from the ITC embeddings (each label is embedded "
        "as a text and the photo's cosine with each, over the ITC temperature, gives its probability). "
        "An attribute with a head is reported from the head. --evaluate scores the tags against the "
        "catalogue's own columns.",
    )
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="checkpoint directory (tag heads and/or ITC heads)"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, default=None, help="a folder of photos (sub-folders too)")
    source.add_argument(
        "--data", default=None, help="a catalogue: a manifest, a folder, a .h5 or 'synthetic'"
    )
    p.add_argument(
        "--split",
        default=None,
        help="with --data: tag this split (default every row; with --evaluate test, else validation)",
    )
    p.add_argument(
        "--zero-shot",
        dest="zero_shot",
        action="append",
        default=[],
        metavar="SPEC",
        help="what to tag zero-shot, repeatable: colour=black,white,red (labels; ';' separates attributes), "
        "colour,pattern (the labels are the values of these --data columns) or a .yaml/.json file "
        "{attribute: [labels]}",
    )
    p.add_argument(
        "--prompt",
        default=DEFAULT_TEMPLATE,
        help="how a label is embedded, with {label} and optionally {attribute} (default '{label}'; "
        "e.g. 'a photo of a {label} garment')",
    )
    p.add_argument(
        "--temperature",
        type=positive_float_arg,
        default=None,
        help="softmax temperature of the cosines (default: the checkpoint's ITC temperature)",
    )
    p.add_argument("--top-k", type=count_arg, default=3, help="labels kept per attribute (default 3)")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="tags.jsonl or tags.csv; with --evaluate a folder (metrics.json + tags.jsonl)",
    )
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="score the top label against the --data columns of the same names: accuracy and "
        "macro-F1 per attribute beside the majority class, into --out/metrics.json",
    )
    p.add_argument("--limit", type=count_arg, default=None, help="tag only the first N photos")
    p.add_argument("--batch-size", type=count_arg, default=32, help="photos per forward (default 32)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip unreadable photos or rows (counted)")
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda | cuda:N (default cpu)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="default fp32 on CPU, auto on CUDA",
    )
    p.add_argument("--threads", type=count_arg, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_tag)


def check_flags(args: argparse.Namespace) -> Any:
    """Every check that needs nothing loaded; returns the parsed vocabulary spec."""
    from .run import output_format
    from .vocabulary import check_template, parse_specs

    if args.evaluate:
        if args.data is None:
            raise UsageError("--evaluate scores tags against a catalogue's columns: give --data MANIFEST")
        if args.out.suffix.lower() in (".jsonl", ".ndjson", ".csv") or args.out.is_file():
            raise UsageError(
                f"--out {args.out}: with --evaluate, --out is a folder (metrics.json, tags.jsonl)"
            )
    else:
        try:
            output_format(args.out)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.split is not None and args.data is None:
        raise UsageError("--split selects rows of --data; a folder of --images has no splits")
    check_template(args.prompt)
    spec = parse_specs(args.zero_shot) if args.zero_shot else None
    if spec is not None and spec.columns and args.data is None:
        raise UsageError(
            f"--zero-shot {','.join(spec.columns)}: labels from a catalogue's columns need --data; "
            "for a folder of photos give the labels (colour=black,white,red) or a file"
        )
    return spec


def run_tag(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        spec = check_flags(args)
        result = _tag(args, spec, progress)
    except ERRORS as err:
        return fail("tag", err)
    run = result["run"]
    report = run.skips.report(result["source"])
    if report:
        print(report, file=sys.stderr)
    if args.evaluate:
        print(format_scores(result["metrics"], result["attributes"]))
        print(f"wrote {args.out / 'metrics.json'} and {args.out / 'tags.jsonl'}")
    else:
        named = ", ".join(f"{a} ({s})" for a, s in result["sources"].items())
        print(f"tagged {len(run.tagged)} photos with {named}: {args.out}")
    return 0


def _tag(args: argparse.Namespace, spec: Any, progress: bool) -> dict[str, Any]:
    from ..data.columns import catalogue_columns
    from ..runtime import resolve_device, resolve_precision
    from .run import tag_photos, write_tags
    from .sources import CataloguePhotos, PhotoFolder
    from .tagger import Tagger, head_labels

    source: Any = PhotoFolder(args.images) if args.images is not None else None
    catalogue = None if source is not None else _open(args)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision or ("fp32" if device.type == "cpu" else "auto"), device)
    model = _load_model(args.checkpoint, device, zero_shot=spec is not None)
    heads = head_labels(model)
    if spec is None and not heads:
        raise UsageError(
            f"--checkpoint {args.checkpoint} has no tag heads (mvlt finetune --labels colour,...): "
            "say what to tag with --zero-shot"
        )
    wanted = list(dict.fromkeys([*heads, *(spec.attributes if spec is not None else [])]))
    columns = None
    if catalogue is not None and (args.evaluate or (spec is not None and spec.columns)):
        columns = catalogue_columns(catalogue, wanted if args.evaluate else spec.columns)
    vocabulary = None
    if spec is not None:
        column_labels = columns.labels if columns is not None else {}
        vocabulary = {a: spec.labels.get(a) or column_labels[a] for a in spec.attributes}
    tagger = Tagger(
        model, vocabulary, template=args.prompt, temperature=args.temperature, autocast=precision.autocast
    )
    if source is None:
        source = CataloguePhotos(catalogue)
    run = tag_photos(
        tagger, source, image_size=int(model.config.image_size), top_k=args.top_k,
        batch_size=args.batch_size, limit=args.limit, skip_bad_rows=args.skip_bad_rows,
        progress=progress, device=device,
    )  # fmt: skip
    result: dict[str, Any] = {
        "run": run, "source": source.source, "attributes": tagger.attributes, "sources": tagger.sources,
    }  # fmt: skip
    if not args.evaluate:
        write_tags(args.out, run.tagged, tagger.attributes)
        return result
    assert columns is not None
    result["metrics"] = _write_evaluation(args, run, columns.values, tagger, catalogue, precision.name)
    return result


def _write_evaluation(
    args: argparse.Namespace, run: Any, values: dict[str, list[str]], tagger: Any, catalogue: Any,
    precision: str,
) -> dict[str, Any]:  # fmt: skip
    """Score every source's top label of every tagged row against the column's ``values``; write
    ``metrics.json`` (with the protocol) and ``tags.jsonl`` into ``--out``."""
    from ..fileio import atomic_write_text
    from .evaluate import score_tags
    from .run import write_tags

    attributes = tagger.attributes
    rows = [int(t.photo.row or 0) for t in run.tagged]  # every photo of a catalogue has its row
    predicted: dict[str, dict[str, list[str]]] = {}
    labels: dict[str, list[str]] = {}
    for a in attributes:
        offered = [s for s, vocabulary in tagger.vocabularies.items() if a in vocabulary]
        predicted[a] = {s: [t.by_source[s][a][0].label for t in run.tagged] for s in offered}
        labels[a] = list(dict.fromkeys(label for s in offered for label in tagger.vocabularies[s][a]))
    truth = {a: [values[a][r] for r in rows] for a in attributes}
    metrics, details = score_tags(predicted, truth, labels)
    zero_shot = tagger.zero_shot
    protocol: dict[str, Any] = {
        "task": "tagging from the image alone: fine-tuned tag heads on the image-only pass, zero-shot "
        "from the ITC embeddings (neither reads the description)",
        "checkpoint": str(args.checkpoint),
        "catalogue": str(catalogue.source),
        "split": getattr(catalogue, "split", None) or "(all rows)",
        "photos": len(run.tagged),
        "skipped": dict(run.skips.counts),
        "sources": {a: [s for s, v in tagger.vocabularies.items() if a in v] for a in attributes},
        "prompt": args.prompt if zero_shot is not None else None,
        "temperature": zero_shot.temperature if zero_shot is not None else None,
        "image_size": int(tagger.model.config.image_size),
        "precision": precision,
        "labels": "fine-tuned: the head's labels (the training split's values); zero-shot: given with "
        "--zero-shot, else the column's distinct values over the whole manifest",
        "matching": "case-folded, spaces collapsed; empty values and values no source offers: counted, "
        "not scored",
        "majority": "always the most common value of the scored rows",
        "attributes": details,
    }
    if hasattr(catalogue, "skips"):  # what the catalogue left out, as mvlt evaluate records it
        from ..data.audit import audit

        protocol["data"] = audit(catalogue)
    write_tags(args.out / "tags.jsonl", run.tagged, attributes)
    text = json.dumps({**metrics, "protocol": protocol}, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(args.out / "metrics.json", text)
    return metrics


def _open(args: argparse.Namespace) -> Any:
    from ..data.sources import open_catalogue
    from ..eval.cli import open_split

    if args.evaluate:
        return open_split(args.data, args.split, skip_bad_rows=args.skip_bad_rows)
    if args.data.strip().lower() != "synthetic" and not Path(args.data).exists():
        raise FileNotFoundError(f"--data {args.data}: no such file or directory")
    return open_catalogue(args.data, split=args.split, skip_bad_rows=args.skip_bad_rows)


def _load_model(checkpoint: Path, device: torch.device, zero_shot: bool) -> Any:
    from ..model import MVLT
    from .zeroshot import require_itc

    if not checkpoint.is_dir():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: not a checkpoint directory")
    model = MVLT.from_pretrained(checkpoint).eval().to(device)
    try:
        if zero_shot:
            require_itc(model)
    except ValueError as err:
        raise ValueError(f"checkpoint {checkpoint}: {err}") from None
    return model


def format_scores(metrics: dict[str, Any], attributes: list[str]) -> str:
    """One line per attribute: each source's accuracy and macro-F1 beside the majority class's."""
    from .evaluate import metric_name, source_stat
    from .tagger import SOURCES

    lines = []
    for a in attributes:
        stats = ("acc_majority", "macro_f1_majority", "items", "labels", "unlabelled_items", "unknown_items")
        m = {stat: metrics.get(metric_name(a, stat)) for stat in stats}
        if m["acc_majority"] is None:
            lines.append(
                f"{a}: no scored rows ({m['unlabelled_items']} empty, {m['unknown_items']} not offered)"
            )
            continue
        scores = [
            f"{s} accuracy {100 * metrics[metric_name(a, 'acc_' + source_stat(s))]:.1f} %, macro-F1 "
            f"{metrics[metric_name(a, 'macro_f1_' + source_stat(s))]:.3f}"
            for s in SOURCES
            if metric_name(a, "acc_" + source_stat(s)) in metrics
        ]
        lines.append(
            f"{a}: {'; '.join(scores)} (majority {100 * m['acc_majority']:.1f} %, "
            f"{m['macro_f1_majority']:.3f}); {m['labels']} labels, {m['items']} rows scored, "
            f"{m['unlabelled_items']} empty and {m['unknown_items']} not offered left out"
        )
    return "\n".join(lines)
