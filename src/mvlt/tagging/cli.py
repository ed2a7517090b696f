"""``mvlt tag``: tags for a folder of photos or a catalogue, from a checkpoint's fine-tuned tag heads
and zero-shot vocabularies, and (``--evaluate``) how well they match the catalogue's own columns.

Every flag is checked before the model loads, so a mistake fails at once (exit 2); what the flags
point at (checkpoint, folder, manifest, photos) fails with exit 1, naming it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from ..exits import ERRORS, UsageError, check_number, count_arg, fail, positive_float_arg
from .neighbours import DEFAULT_K, DEFAULT_TEMPERATURE, DEFAULT_WEIGHT
from .vocabulary import DEFAULT_TEMPLATE

log = logging.getLogger("mvlt.tagging")


TASK = "tagging"
"""``mvlt evaluate --task tagging``: this package's evaluation, run alone."""
EVALUATE_FLAGS = (
    "checkpoint", "data", "task", "out", "split", "skip_bad_rows", "batch_size", "threads", "precision",
    "device", "no_progress",
)  # fmt: skip
"""The ``mvlt evaluate`` options that apply to ``--task tagging`` (by dest); any other given is exit 2."""
TAGGING_FLAGS = (
    "zero_shot", "prompt", "temperature", "top_k", "neighbours", "neighbours_split", "neighbours_k",
    "neighbours_temperature", "neighbour_weight",
)  # fmt: skip
"""What :func:`add_vocabulary_flags` adds (by dest): only for ``--task tagging``."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tag",
        help="attribute tags (colour, pattern...) for photos: fine-tuned tag heads and zero-shot",
        description="Tag photos from the image alone: with the checkpoint's tag heads (mvlt finetune "
        "--labels) and with every --zero-shot attribute, from the ITC embeddings (each label is embedded "
        "as a text and the photo's cosine with each, over the ITC temperature, gives its probability). "
        "An attribute with a head is reported from the head. --evaluate scores the tags against the "
        "catalogue's own columns (as mvlt evaluate --task tagging).",
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
    add_vocabulary_flags(p)
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="tags.jsonl or tags.csv; with --evaluate a folder (metrics.json, report.html, tags.jsonl)",
    )
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="score the top label against the --data columns of the same names: accuracy and "
        "macro-F1 per attribute, image only and image + text, beside the majority class, into "
        "--out/metrics.json and --out/report.html (as mvlt evaluate --task tagging)",
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


def add_vocabulary_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--zero-shot``, ``--prompt``, ``--temperature`` and ``--top-k``: ``mvlt tag``'s, and
    ``mvlt evaluate --task tagging``'s."""
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
        "--neighbours",
        default=None,
        metavar="MANIFEST",
        help="a labelled catalogue whose photos vote for the head columns' tags: each photo's k most "
        "similar (image pass, cosine) vote, blended with the heads (source fine-tuned+neighbours)",
    )
    p.add_argument(
        "--neighbours-split", default="train", help="the split of --neighbours that votes (default train)"
    )
    p.add_argument(
        "--neighbours-k", type=count_arg, default=DEFAULT_K, help=f"photos that vote (default {DEFAULT_K})"
    )
    p.add_argument(
        "--neighbours-temperature",
        type=positive_float_arg,
        default=DEFAULT_TEMPERATURE,
        help=f"the votes' weights are softmax(cosine / this) (default {DEFAULT_TEMPERATURE})",
    )
    p.add_argument(
        "--neighbour-weight",
        type=float,
        default=DEFAULT_WEIGHT,
        help=f"the votes' share of the blend, in [0, 1] (default {DEFAULT_WEIGHT}; 1: the votes alone)",
    )


def extend_evaluate(parser: argparse.ArgumentParser) -> None:
    """Make ``mvlt evaluate --task tagging`` this package's evaluation (the one ``mvlt tag
    --evaluate`` runs): add the tagging flags to the evaluate command and take the runs that ask
    for the task. Evaluation sits below tagging and never imports it, so the extension is made
    from here, by ``mvlt.cli``."""
    group = parser.add_argument_group("tagging (--task tagging, run alone)")
    add_vocabulary_flags(group)
    evaluate = parser.get_default("run")
    flags = {a.dest: (a.option_strings[-1], a.default) for a in parser._actions if a.option_strings}

    def run(args: argparse.Namespace) -> int:
        tasks = [t.strip() for t in args.task.split(",") if t.strip()]
        own = [f for f in TAGGING_FLAGS if getattr(args, f) != flags[f][1]]
        if TASK in tasks:
            return _run_task(args, tasks, flags)
        if own:
            named = ", ".join(flags[f][0] for f in own)
            return fail("evaluate", UsageError(f"{named}: only with --task tagging"))
        return evaluate(args)

    parser.set_defaults(run=run)


def _run_task(args: argparse.Namespace, tasks: list[str], flags: dict[str, tuple[str, Any]]) -> int:
    """``mvlt evaluate --task tagging``: the flags that apply, checked, then :func:`_evaluate`."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if tasks != [TASK]:
            raise UsageError(
                f"--task {args.task}: tagging runs alone (it writes its own metrics.json and report.html); "
                "evaluate the other tasks in a second command"
            )
        other = [
            option for dest, (option, default) in flags.items()
            if dest not in (*EVALUATE_FLAGS, *TAGGING_FLAGS) and getattr(args, dest, default) != default
        ]  # fmt: skip
        if other:
            raise UsageError(f"{', '.join(other)}: does not apply to --task tagging")
        spec = _evaluation_flags(args)
        progress = not args.no_progress and sys.stderr.isatty()
        return _evaluate(_options(args, spec, progress, args.device, args.precision))
    except ERRORS as err:
        return fail("evaluate", err)


def _evaluation_flags(args: argparse.Namespace) -> Any:
    """An evaluation's ``--out`` (a folder), ``--zero-shot`` / ``--prompt`` and neighbours; the
    parsed spec."""
    from .vocabulary import check_template, parse_specs

    out = args.out
    if out.suffix.lower() in (".jsonl", ".ndjson", ".csv") or out.is_file():
        raise UsageError(f"--out {out}: an evaluation's --out is a folder (metrics.json, report.html, ...)")
    check_template(args.prompt)
    _check_neighbour_flags(args)
    return parse_specs(args.zero_shot) if args.zero_shot else None


NEIGHBOUR_SETTINGS = {
    "neighbours_split": ("--neighbours-split", "train"),
    "neighbours_k": ("--neighbours-k", DEFAULT_K),
    "neighbours_temperature": ("--neighbours-temperature", DEFAULT_TEMPERATURE),
    "neighbour_weight": ("--neighbour-weight", DEFAULT_WEIGHT),
}


def _check_neighbour_flags(args: argparse.Namespace) -> None:
    """The neighbour settings are sane, given with ``--neighbours``, and its manifest is there."""
    check_number("--neighbour-weight", args.neighbour_weight, "fraction")
    if args.neighbours is not None:
        if not Path(args.neighbours).is_file():
            raise FileNotFoundError(f"--neighbours {args.neighbours}: no such manifest")
        return
    given = [flag for dest, (flag, default) in NEIGHBOUR_SETTINGS.items() if getattr(args, dest) != default]
    if given:
        raise UsageError(f"{', '.join(given)}: only with --neighbours MANIFEST")


def check_flags(args: argparse.Namespace) -> Any:
    """Every check that needs nothing loaded; returns the parsed vocabulary spec."""
    from .run import output_format
    from .vocabulary import check_template, parse_specs

    if args.evaluate:
        if args.data is None:
            raise UsageError("--evaluate scores tags against a catalogue's columns: give --data MANIFEST")
        return _evaluation_flags(args)
    _check_neighbour_flags(args)
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
        if args.evaluate:
            return _evaluate(_options(args, spec, progress, args.device, args.precision))
        result = _tag(args, spec, progress)
    except ERRORS as err:
        return fail("tag", err)
    run = result["run"]
    report = run.skips.report(result["source"])
    if report:
        print(report, file=sys.stderr)
    named = ", ".join(f"{a} ({s})" for a, s in result["sources"].items())
    print(f"tagged {len(run.tagged)} photos with {named}: {args.out}")
    return 0


def _options(args: argparse.Namespace, spec: Any, progress: bool, device: str, precision: str | None) -> Any:
    """The flags both evaluation commands share, as :class:`~.task.TagEvalOptions`."""
    from .task import TagEvalOptions

    return TagEvalOptions(
        checkpoint=args.checkpoint, data=args.data, out=args.out, split=args.split, spec=spec,
        prompt=args.prompt, temperature=args.temperature, top_k=args.top_k,
        batch_size=args.batch_size or 32, limit=getattr(args, "limit", None),
        skip_bad_rows=args.skip_bad_rows, device=device, precision=precision, progress=progress,
        neighbours=args.neighbours, neighbours_split=args.neighbours_split, neighbours_k=args.neighbours_k,
        neighbours_temperature=args.neighbours_temperature, neighbour_weight=args.neighbour_weight,
    )  # fmt: skip


def _evaluate(options: Any) -> int:
    """Run one tagging evaluation and print its scores (errors are the caller's to report)."""
    from .task import evaluate_tagging, format_scores

    result = evaluate_tagging(options)
    report = result.run.skips.report(result.source)
    if report:
        print(report, file=sys.stderr)
    print(format_scores(result.metrics, result.attributes))
    out = options.out
    print(f"wrote {out / 'metrics.json'}, {out / 'report.html'} and {out / 'tags.jsonl'}")
    return 0


def _tag(args: argparse.Namespace, spec: Any, progress: bool) -> dict[str, Any]:
    from ..data.columns import catalogue_columns
    from ..runtime import resolve_device, resolve_precision
    from .neighbours import open_neighbours
    from .run import load_model, tag_photos, write_tags
    from .sources import CataloguePhotos, PhotoFolder
    from .tagger import Tagger

    source: Any = PhotoFolder(args.images) if args.images is not None else None
    catalogue = None if source is not None else _open(args)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision or ("fp32" if device.type == "cpu" else "auto"), device)
    model, heads = load_model(args.checkpoint, device, zero_shot=spec is not None)
    vocabulary = None
    if spec is not None:
        column_labels = {}
        if catalogue is not None and spec.columns:
            column_labels = catalogue_columns(catalogue, spec.columns).labels
        vocabulary = {a: spec.labels.get(a) or column_labels[a] for a in spec.attributes}
    neighbours = None
    if args.neighbours is not None:
        neighbours = open_neighbours(
            model, heads, args.neighbours, args.neighbours_split, k=args.neighbours_k,
            temperature=args.neighbours_temperature, batch_size=args.batch_size, device=device,
            autocast=precision.autocast, skip_bad_rows=args.skip_bad_rows, progress=progress,
        )  # fmt: skip
    tagger = Tagger(
        model, vocabulary, template=args.prompt, temperature=args.temperature, autocast=precision.autocast,
        neighbours=neighbours, neighbour_weight=args.neighbour_weight,
    )  # fmt: skip
    if source is None:
        source = CataloguePhotos(catalogue)
    run = tag_photos(
        tagger, source, image_size=int(model.config.image_size), top_k=args.top_k,
        batch_size=args.batch_size, limit=args.limit, skip_bad_rows=args.skip_bad_rows,
        progress=progress, device=device,
    )  # fmt: skip
    write_tags(args.out, run.tagged, tagger.attributes)
    return {"run": run, "source": source.source, "sources": tagger.sources}


def _open(args: argparse.Namespace) -> Any:
    from ..data.sources import open_catalogue

    if args.data.strip().lower() != "synthetic" and not Path(args.data).exists():
        raise FileNotFoundError(f"--data {args.data}: no such file or directory")
    return open_catalogue(args.data, split=args.split, skip_bad_rows=args.skip_bad_rows)
