"""``mvlt pretrain`` and ``mvlt finetune``: a config file plus flags, run by the training engine.

Precedence: the sub-command's defaults < ``--config FILE`` < flags (``--set KEY=VALUE`` reaches
any config key, dotted keys reach into mappings, e.g. ``--set model_overrides.text_dropout=0``).
With ``--resume`` the run's saved ``<out>/config.yaml`` is the base instead of the defaults.

Runs the same alone or under ``torchrun --nproc_per_node N -m mvlt.cli pretrain ...``.
``python -m mvlt.train.cli`` offers just these two commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from ..data.catalogue import normalise_split
from ..exits import ERRORS, INTERRUPTED, check_number, fail
from .config import (
    DEVICES,
    INPUT_SCHEDULES,
    PRECISIONS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    load_config,
    read_config_file,
)

SAFE_TO_CHANGE_ON_RESUME = {"out", "threads", "workers", "image_cache", "log_every", "checkpoint_every",
                            "keep_checkpoints", "progress", "tensorboard", "device", "fit_heads"}  # fmt: skip
"""Keys that may differ from the saved run without changing what one step computes."""
NUMBER_RULES = {
    "image_size": "image_size", "batch_size": "count", "accumulation": "count", "steps": "count",
    "epochs": "positive", "max_minutes": "positive", "fit_minutes": "positive", "lr": "positive",
    "base_lr": "positive",
    "min_lr": "non_negative", "warmup_steps": "whole", "warmup_ratio": "fraction",
    "weight_decay": "non_negative", "clip_grad_norm": "positive", "mask_ratio": "open_fraction",
    "mask_unit": "count", "mlm_prob": "fraction", "itm_negative_prob": "fraction", "vocab_size": "count",
    "max_text_len": "count", "threads": "count", "workers": "whole", "checkpoint_every": "count",
    "keep_checkpoints": "count", "log_every": "count", "batch_groups": "whole", "itc_memory": "whole",
    "fit_heads_teacher": "fraction", "sentence_drop": "fraction", "ema_decay": "fraction",
}  # fmt: skip
"""What each numeric flag must be (:data:`mvlt.exits.RULES`): ``--lr nan`` is refused naming the flag."""

FLAGS: tuple[tuple[str, str, Any, str, str], ...] = (
    ("--model", "model", str, "NAME", "model variant (mvlt.list_models()); pre-training only"),
    ("--recipe", "recipe", str, "R", "mvlt (default: ITC + ITM on mined negatives + MLM + MIR) or paper"),
    ("--data", "data", str, "PATH", "'synthetic', a manifest (CSV/JSONL or its folder) or a Fashion-Gen .h5"),
    ("--split", "split", str, "NAME", "training split (default train; 'all' for every row)"),
    ("--image-size", "image_size", int, "N", "training image side in px (multiple of 32)"),
    ("--batch-size", "batch_size", int, "N", "global batch per optimizer step, over all processes"),
    ("--accumulation", "accumulation", int, "N", "micro-batches per optimizer step"),
    ("--batch-groups", "batch_groups", int, "N", "batches of N-item blocks sharing a sub-category (0: off)"),
    ("--itc-memory", "itc_memory", int, "N", "the last N rows' ITC embeddings as extra negatives (0: off)"),
    ("--fit-heads-teacher", "fit_heads_teacher", float, "W", "--fit-heads targets' share from the teachers"),
    ("--steps", "steps", int, "N", "optimizer steps (wins over --epochs)"),
    ("--epochs", "epochs", float, "N", "passes over the training split (default 1)"),
    (
        "--max-minutes",
        "max_minutes",
        float,
        "M",
        "stop (with a checkpoint) after M minutes of this invocation; --resume continues, with M again",
    ),
    (
        "--fit-minutes",
        "fit_minutes",
        float,
        "M",
        "fit the run to M minutes of training: after a minute, re-fit the steps to the measured rate",
    ),
    ("--lr", "lr", float, "X", "peak learning rate (default: 2.5e-4 x batch / 512, released code)"),
    ("--base-lr", "base_lr", float, "X", "lr per 512 samples when --lr is not given"),
    ("--min-lr", "min_lr", float, "X", "floor of the cosine decay"),
    ("--warmup-steps", "warmup_steps", int, "N", "linear warm-up steps"),
    ("--warmup-ratio", "warmup_ratio", float, "X", "warm-up as a fraction of the run"),
    ("--weight-decay", "weight_decay", float, "X", "AdamW weight decay (not on biases/norms/positions)"),
    ("--ema-decay", "ema_decay", float, "D", "save a moving average of the weights, decay D (0: off)"),
    ("--clip-grad-norm", "clip_grad_norm", float, "X", "clip the gradient norm to this"),
    ("--precision", "precision", str, "P", f"one of {', '.join(PRECISIONS)} (default auto)"),
    ("--device", "device", str, "D", f"one of {', '.join(DEVICES)}"),
    ("--input-schedule", "input_schedule", str, "S", f"one of {', '.join(INPUT_SCHEDULES)}"),
    (
        "--objectives",
        "objectives",
        str,
        "LIST",
        "comma-separated subset of itc,mir,itm,mlm,category,subcategory,tags (with tags_text)",
    ),
    (
        "--labels",
        "labels",
        str,
        "COLUMNS",
        "one image-only tag head (and a text-only twin) per catalogue column, e.g. colour,pattern",
    ),
    ("--augment", "augment", str, "LIST", "geometric augmentation of the clean images: flip,crop"),
    ("--sentence-drop", "sentence_drop", float, "P", "leave out each sentence after a text's first with P"),
    ("--loss-weights", "loss_weights", str, "K=W,...", "e.g. itc=1,itm=1,mlm=1,mir=1"),
    ("--mask-strategy", "mask_strategy", str, "S", "random_grid, grid, stroke or center"),
    ("--mask-ratio", "mask_ratio", float, "X", "fraction of the image masked for MIR"),
    ("--mask-unit", "mask_unit", int, "PX", "mask unit in px"),
    ("--mlm-prob", "mlm_prob", float, "X", "fraction of word-pieces selected for MLM"),
    ("--itm-negative-prob", "itm_negative_prob", float, "X", "probability of a mismatched text"),
    (
        "--itm-negatives",
        "itm_negatives",
        str,
        "S",
        "itc (mined from ITC), random or hard (same sub-category)",
    ),
    (
        "--teachers",
        "teachers",
        str,
        "LIST",
        "pretrained knowledge while training: text-init,text,image,cross or all (those four), "
        "text-raw,image-raw (each teacher's own features), and tags (with --labels) (needs `make teachers`)",
    ),
    (
        "--teacher-cache",
        "teacher_cache",
        str,
        "DIR",
        "teacher features cache (default ~/.cache/mvlt/teachers)",
    ),
    ("--tokenizer", "tokenizer", str, "PATH", "a vocab.txt, a saved tokenizer folder, or 'train'"),
    ("--vocab-size", "vocab_size", int, "N", "vocabulary size for --tokenizer train"),
    ("--max-text-len", "max_text_len", int, "N", "tokens per text including [CLS]/[SEP]"),
    ("--init", "init", str, "CHECKPOINT", "checkpoint to start from (finetune: the pre-trained model)"),
    ("--out", "out", str, "DIR", "output directory (a loadable model; checkpoints/ and logs inside)"),
    ("--seed", "seed", int, "N", "random seed"),
    ("--threads", "threads", int, "N", "torch.set_num_threads per process"),
    ("--workers", "workers", int, "N", "DataLoader worker processes"),
    (
        "--image-cache",
        "image_cache",
        str,
        "DIR",
        "decoded-image cache: auto (in $MVLT_CACHE_DIR/images or ~/.cache/mvlt/images), off, or a folder",
    ),
    ("--checkpoint-every", "checkpoint_every", int, "N", "save a resumable checkpoint every N steps"),
    ("--keep-checkpoints", "keep_checkpoints", int, "K", "keep the newest K checkpoints"),
    ("--log-every", "log_every", int, "N", "write metrics every N steps"),
)
"""(flag, config key, type, metavar, help); every flag defaults to "not given", so only the
flags a user types override the config file."""

DESCRIPTION = """Settings: the defaults < --config FILE < flags; --set KEY=VALUE reaches any config key,
dotted keys reach into mappings (--set model_overrides.text_dropout=0). With --resume the run's
saved OUT/config.yaml replaces the defaults. Runs alone or under torchrun."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pretrain`` and ``finetune`` to the ``mvlt`` command line."""
    for task, text in (
        ("pretrain", "pre-train MVLT (ITC + ITM + MLM + MIR, or --recipe paper) on a catalogue"),
        ("finetune", "fine-tune the recognition heads (and encoder) from a pre-trained checkpoint"),
    ):
        parser = subparsers.add_parser(
            task,
            help=text,
            description=f"{text[0].upper()}{text[1:]}.\n\n{DESCRIPTION}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_flags(parser, task)
        parser.set_defaults(run=run_pretrain if task == "pretrain" else run_finetune)


def _add_flags(parser: argparse.ArgumentParser, task: str) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML or JSON file of config keys")
    for flag, key, kind, metavar, text in FLAGS:
        parser.add_argument(flag, dest=key, type=kind, default=None, metavar=metavar, help=text)
    if task == "finetune":
        parser.add_argument("--freeze-encoder", dest="freeze_encoder", action="store_const", const=True,
                            default=None, help="train only the recognition heads")  # fmt: skip
    parser.add_argument("--fit-heads", dest="fit_heads", action="store_const", const=True, default=None,
                        help="after the last step, fit the recognition heads' output layers as linear "
                             "probes on the frozen encoder (recommended: minutes of fine-tuning leave "
                             "them far from what the [CLS] can tell apart)")  # fmt: skip
    for key, text in (("progress", "progress bar"), ("tensorboard", "TensorBoard logs")):
        parser.add_argument(
            f"--{key}", dest=key, action=argparse.BooleanOptionalAction, default=None, help=text
        )
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config key (YAML value); repeatable")  # fmt: skip
    parser.add_argument("--skip-bad-rows", dest="skip_bad_rows", action="store_const", const=True,
                        default=None, help="leave out unusable rows (counted in train.log)")  # fmt: skip
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="STEP",
                        help="continue the run in --out from its newest checkpoint that loads, or from "
                        "STEP (e.g. step-0000002)")  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an earlier run's checkpoints in --out"
    )


def run_pretrain(args: argparse.Namespace) -> int:
    return _run(args, "pretrain")


def run_finetune(args: argparse.Namespace) -> int:
    return _run(args, "finetune")


def _run(args: argparse.Namespace, task: str) -> int:
    from .engine import train

    try:
        config = resolve_config(args, task)
        result = train(config, resume=args.resume, overwrite=args.overwrite)
    except ERRORS as err:
        return fail(task, err)
    return INTERRUPTED.get(result.interrupted or "", 0)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys given on the command line (flags and ``--set``), parsed to config types."""
    overrides: dict[str, Any] = {}
    for flag, key, *_ in FLAGS:
        value = getattr(args, key, None)
        if value is not None:
            if key in NUMBER_RULES:
                check_number(flag, value, NUMBER_RULES[key])
            overrides[key] = value
    for key in ("freeze_encoder", "fit_heads", "progress", "tensorboard", "skip_bad_rows"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    if "split" in overrides:
        overrides["split"] = normalise_split(overrides["split"])
    for key in ("objectives", "labels", "augment"):
        if key in overrides:
            overrides[key] = [s.strip() for s in overrides[key].split(",") if s.strip()]
    if "loss_weights" in overrides:
        items = overrides["loss_weights"].split(",")
        overrides["loss_weights"] = parse_key_values(items, "--loss-weights", float)
    overrides.update(parse_key_values(args.sets, "--set", yaml_value))
    return overrides


def parse_key_values(items: list[str], flag: str, parse: Any) -> dict[str, Any]:
    """``["a=1", "b=2"]`` -> ``{"a": parse("1"), ...}``; a malformed item is a ``ConfigError``
    naming ``flag``."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            values[key.strip()] = parse(value.strip())
        except ValueError as err:
            raise ConfigError(f"{flag} {item!r}: {err}") from err
    return values


def yaml_value(text: str) -> Any:
    """A ``--set`` value as YAML reads it (``0.1`` a float, ``true`` a bool, ``[a, b]`` a list)."""
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError as err:
        raise ValueError(f"not a YAML value: {err}") from err


def resolve_config(args: argparse.Namespace, task: str) -> TrainConfig:
    """Defaults < ``--config`` < flags; with ``--resume``, the run's saved config is the base."""
    overrides = flag_overrides(args)
    file_values = read_config_file(args.config) if args.config else {}
    if file_values.get("task", task) != task:
        raise ConfigError(f"{args.config}: task {file_values['task']!r} does not match `mvlt {task}`")
    out = Path(overrides.get("out") or file_values.get("out") or f"runs/{task}")
    saved_path = out / "config.yaml"
    if args.resume and saved_path.is_file():
        saved = load_config(saved_path)
        config = apply_overrides(saved, file_values, str(args.config)) if file_values else saved
        config = apply_overrides(config, {**overrides, "out": str(out)})
        changed = _changed(saved, config)
        if changed and os.environ.get("RANK", "0") == "0":
            print(f"mvlt {task}: warning: resuming with changed settings ({changed}); the result will not "
                  "match an uninterrupted run", file=sys.stderr)  # fmt: skip
    else:
        config = load_config(args.config, {**overrides, "out": str(out)}, task=task)
    if config.task != task:
        raise ConfigError(f"{saved_path}: this run is a {config.task!r} run, not `mvlt {task}`")
    return config.validate()


def _changed(before: TrainConfig, after: TrainConfig) -> str:
    """Changed settings that alter what a step computes (the architecture is checked by the engine)."""
    from .resume import ARCHITECTURE

    a, b = before.to_dict(), after.to_dict()
    keys = [k for k in a if a[k] != b[k] and k not in SAFE_TO_CHANGE_ON_RESUME and k not in ARCHITECTURE]
    return ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in keys)


def main(argv: list[str] | None = None) -> int:
    """``python -m mvlt.train.cli {pretrain,finetune} ...``."""
    parser = argparse.ArgumentParser(prog="mvlt", description="MVLT training.")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
