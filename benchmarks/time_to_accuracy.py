"""Time to accuracy (MLPerf Training's measure): wall minutes from a fresh model until TIR and ITR
R@5 both reach the target on the H&M test split, everything on the clock: opening the catalogue,
building the decoded-image cache, teacher features (``--teachers``), training and every evaluation.

The default recipe (the demo's pre-training: ``mvlt_nano``, 96 px, batch 64, lr 1e-3, ITC + ITM +
MLM + MIR) trains with its length fitted to ``--minutes`` (``fit_minutes``), in chunks of
``--eval-every`` minutes (``max_minutes``; each chunk resumes the last exactly). After each chunk
the model is scored on one fixed 1 + 100 subset of ``--queries`` queries (``--score``: by default
``itc+itm`` when the stage trains ITM, else ``itc``; lists sampled once with the seed and
re-used), until both directions reach ``--target`` or the fitted run ends. One run at a time, on a
quiet machine: it is a wall-clock measure.

Design comparisons are scored on a validation slice, never on test: ``--data`` a manifest whose
``val`` split is products held out of train (``docs/results/tagging/make_val_slice.py``) and
``--split val``; ``--shared-caches DIR`` lets the runs of one comparison build the image cache and
teacher features once. ``--finetune-minutes M`` adds ``mvlt demo``'s second stage after the
pre-training: recognition heads fine-tuned for M minutes, then retrieval (the same lists) and
recognition (M-CR, S-CR) scored on the fine-tuned model, both on the clock; ``--fit-heads`` ends
it by fitting the heads as linear probes on the encoder (``TrainConfig.fit_heads``). A pre-training that
trains the recognition heads itself (``--objectives ...,category,subcategory``: they read the ITM
pass's true pairs, no extra pass) is scored on M-CR / S-CR at every point.

    .venv/bin/python benchmarks/time_to_accuracy.py [--minutes 16] [--eval-every 4] [--target 0.45]
        [--queries 500] [--teachers SOURCES] [--objectives LIST] [--model mvlt_nano] [--image-size 96]
        [--augment LIST] [--set KEY=VALUE ...] [--split test] [--shared-caches DIR]
        [--finetune-minutes 0] [--fit-heads]
        [--out runs/time-to-accuracy] [--threads 2] [--json benchmarks/results/time_to_accuracy.json]
        [--picture docs/images/time_to_accuracy.png]
    .venv/bin/python benchmarks/time_to_accuracy.py --redraw RUN.json [RUN.json ...] --picture PNG
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from mvlt.data import DataError, open_catalogue
from mvlt.demo import FINETUNE_MATCHING
from mvlt.eval import EvalOptions, RetrievalProtocol, evaluate, names
from mvlt.eval.curves import draw_curves
from mvlt.eval.runner import CANDIDATES_NAME
from mvlt.model import MVLT, list_models
from mvlt.train import ConfigError, TrainConfig, train
from mvlt.train.cli import parse_key_values, yaml_value
from mvlt.train.config import apply_overrides

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HM_MANIFEST, machine

LOCAL_PATHS = {"out", "image_cache", "teacher_cache", "init"}
"""Recipe fields left out of the record: where this run kept its files."""
FINETUNED_TASKS = ("retrieval", "recognition")
"""What a model with recognition heads is scored on (after fine-tuning, or a pre-training that
trains them: ``--objectives ...,category,subcategory``)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(HM_MANIFEST), help="catalogue manifest (default H&M)")
    p.add_argument("--minutes", type=float, default=16.0, help="training minutes the run is fitted to")
    p.add_argument("--eval-every", type=float, default=4.0, help="training minutes between evaluations")
    p.add_argument("--target", type=float, default=0.45, help="TIR and ITR R@5 to reach (a fraction)")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--negatives", type=int, default=100, help="K of the 1 + K lists")
    p.add_argument("--seconds-per-step", type=float, default=1.0, help="first guess of the step time")
    p.add_argument("--teachers", default=None, help="teacher sources, as mvlt pretrain --teachers")
    p.add_argument("--objectives", default=None, help="keep only these objectives (default: the recipe's)")
    p.add_argument(
        "--pair-head", action="store_true",
        help="give the model a pair head (MVLTConfig.pair_head): kd_image / kd_text teach it, not ITC",
    )  # fmt: skip
    p.add_argument(
        "--loss-weights", default=None, metavar="K=W,...",
        help="objective weights, as mvlt pretrain --loss-weights (e.g. kd_image=20,kd_text=20)",
    )  # fmt: skip
    p.add_argument(
        "--batch-groups", type=int, default=0, metavar="N",
        help="batches of N-item blocks that share a sub-category (TrainConfig.batch_groups; 0: off)",
    )  # fmt: skip
    p.add_argument(
        "--itc-memory", type=int, default=0, metavar="N",
        help="the last N rows' ITC embeddings as extra negatives (TrainConfig.itc_memory; 0: off)",
    )  # fmt: skip
    p.add_argument(
        "--itc-memory-start", type=float, default=0.5, metavar="F",
        help="the fraction of pre-training after which the memory is used (TrainConfig.itc_memory_start)",
    )  # fmt: skip
    p.add_argument(
        "--kd-decay-start", type=float, default=1.0, metavar="F",
        help="anneal the kd_* weights linearly to 0 from this fraction of each run on "
        "(TrainConfig.kd_decay_start; 1: constant)",
    )  # fmt: skip
    p.add_argument("--model", default="mvlt_nano", help="registered variant (mvlt.list_models())")
    p.add_argument("--image-size", type=int, default=96, help="pixels a side the model sees")
    p.add_argument("--lr", type=float, default=1e-3, help="pre-training's peak learning rate")
    p.add_argument(
        "--augment", default=None, metavar="LIST",
        help="geometric augmentation of the clean images, as mvlt pretrain --augment (flip,crop)",
    )  # fmt: skip
    p.add_argument(
        "--split", default="test",
        help="the catalogue split scored (a validation slice's 'val' when comparing designs)",
    )  # fmt: skip
    p.add_argument(
        "--shared-caches", type=Path, default=None, metavar="DIR",
        help="keep the image and teacher caches in DIR, shared between runs: their building is then "
        "off the clock for every run but the first (design comparisons only; the record says so)",
    )  # fmt: skip
    p.add_argument(
        "--finetune-minutes", type=float, default=0.0, metavar="M",
        help="after pre-training, fine-tune the recognition heads for M minutes (ITC, ITM and the "
        "teachers' losses kept on, as mvlt demo keeps the matching ones), then score retrieval and "
        "recognition (M-CR, S-CR) on the fine-tuned model; 0: pre-training only",
    )  # fmt: skip
    p.add_argument(
        "--fit-heads", action="store_true",
        help="end the fine-tuning by fitting the recognition heads as linear probes on the encoder's "
        "[CLS] (TrainConfig.fit_heads), on the clock",
    )  # fmt: skip
    p.add_argument(
        "--fit-heads-teacher", type=float, default=0.0, metavar="W",
        help="with --fit-heads: the teachers' probabilities' share of the fit's targets "
        "(TrainConfig.fit_heads_teacher; their probe on the clock)",
    )  # fmt: skip
    p.add_argument(
        "--heads-read-itc", action="store_true",
        help="fine-tune recognition heads that also read the ITC embeddings "
        "(MVLTConfig.recognition_reads_itc)",
    )  # fmt: skip
    p.add_argument(
        "--score", choices=("auto", "itc", "itc+itm"), default="auto",
        help="the retrieval scorer of every evaluation; auto: itc+itm when the stage scored trains "
        "ITM (a pre-training with --objectives without itm is scored by itc)",
    )  # fmt: skip
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="set any pre-training config key, as mvlt pretrain --set (e.g. weight_decay=0.1, "
        "model_overrides.drop_path_rate=0.1); repeatable",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/time-to-accuracy"))
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--picture", type=Path, default=None, help="draw R@5 against minutes here (PNG)")
    p.add_argument(
        "--redraw", type=Path, nargs="+", default=None, metavar="JSON",
        help="only draw these kept runs' JSON into --picture, one line each; nothing is trained",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.redraw and not args.picture:
        p.error("--redraw needs --picture (where to draw)")
    if args.model not in list_models():
        p.error(f"--model {args.model}: not a registered variant; known: {', '.join(list_models())}")
    for path in args.redraw or []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            p.error(f"--redraw {path}: not a readable JSON file ({err})")
        if not isinstance(record, dict) or not record.get("points") or "target" not in record:
            p.error(f"--redraw {path}: not a time_to_accuracy result (no points or target)")
    try:
        items = [i for i in (args.loss_weights or "").split(",") if i.strip()]
        args.loss_weights = parse_key_values(items, "--loss-weights", float)
        args.sets = parse_key_values(args.sets, "--set", yaml_value)
    except ConfigError as err:
        p.error(str(err))
    positive = ("minutes", "eval_every", "target", "queries", "negatives", "seconds_per_step", "image_size")
    for name in (*positive, "lr"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.finetune_minutes < 0:
        p.error("--finetune-minutes must not be negative")
    if args.fit_heads and not args.finetune_minutes:
        p.error("--fit-heads fits the fine-tuned recognition heads: give --finetune-minutes")
    if not 0 <= args.kd_decay_start <= 1:
        p.error("--kd-decay-start must be a fraction of the run in [0, 1]")
    if args.heads_read_itc and not args.finetune_minutes:
        p.error("--heads-read-itc shapes the fine-tuned recognition heads: give --finetune-minutes")
    if args.fit_heads_teacher and not args.fit_heads:
        p.error("--fit-heads-teacher weighs the teachers in the heads' fit: add --fit-heads")
    if not 0 <= args.fit_heads_teacher <= 1:
        p.error("--fit-heads-teacher must be in [0, 1]")
    if args.score == "itc+itm" and args.objectives and "itm" not in args.objectives.split(","):
        p.error("--score itc+itm re-ranks with the ITM head, which --objectives leaves untrained")
    return args


def scorer(config: TrainConfig, args: argparse.Namespace) -> str:
    """The stage's retrieval scorer: ``--score``, or under ``auto`` ITC re-ranked by ITM where the
    stage trains ITM, else ITC alone (an untrained ITM head would re-rank at random)."""
    if args.score != "auto":
        return args.score
    return "itc+itm" if config.resolved_loss_weights()["itm"] > 0 else "itc"


def training_config(args: argparse.Namespace) -> TrainConfig:
    """The demo's pre-training, its caches inside ``--out`` so that building them is on the clock."""
    caches = args.shared_caches or args.out
    config = TrainConfig(
        task="pretrain", model=args.model, data=args.data, image_size=args.image_size, batch_size=64,
        lr=args.lr, seed=args.seed, threads=args.threads,
        steps=max(20, int(60 * args.minutes / args.seconds_per_step)),
        fit_minutes=args.minutes, max_minutes=args.eval_every, checkpoint_every=10**6, keep_checkpoints=1,
        log_every=25, image_cache=str(caches / "image-cache"), out=str(args.out / "train"),
        teachers=args.teachers.split(",") if args.teachers else None,
        objectives=args.objectives.split(",") if args.objectives else None,
        teacher_cache=str(caches / "teacher-cache"), augment=args.augment,
        model_overrides={"pair_head": True} if args.pair_head else {}, batch_groups=args.batch_groups,
        itc_memory=args.itc_memory, itc_memory_start=args.itc_memory_start,
        kd_decay_start=args.kd_decay_start, loss_weights=args.loss_weights,
    )  # fmt: skip
    return apply_overrides(config, args.sets, "--set") if args.sets else config


def recipe(config: TrainConfig) -> dict[str, object]:
    """The config as recorded: without the paths where this run kept its files."""
    return {k: v for k, v in asdict(config).items() if k not in LOCAL_PATHS}


def finetune_config(config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """Recognition fine-tuning of the pre-trained model, as ``mvlt demo``'s (lr 5e-4, ITC and ITM
    kept on), with the run's teachers' losses and weights kept too (their features are cached)."""
    return replace(
        config, task="finetune", init=config.out, out=str(args.out / "finetune"), lr=5e-4,
        steps=max(20, int(60 * args.finetune_minutes / args.seconds_per_step)),
        fit_minutes=args.finetune_minutes, max_minutes=None, objectives=None,
        model_overrides={"recognition_reads_itc": True} if args.heads_read_itc else {},
        teachers=[s for s in config.teacher_sources() if s != "text-init"] or None,
        loss_weights={**FINETUNE_MATCHING, **config.loss_weights}, fit_heads=args.fit_heads,
        fit_heads_teacher=args.fit_heads_teacher,
    )  # fmt: skip


def score(
    model_dir: Path,
    test_set: object,
    config: TrainConfig,
    args: argparse.Namespace,
    out: Path,
    tasks: tuple[str, ...] = ("retrieval",),
) -> dict[str, float]:
    """TIR / ITR R@1, R@5, R@10 on the fixed lists (sampled by the first call, re-used after), and
    M-CR / S-CR accuracy when ``tasks`` asks for recognition."""
    lists = args.out / CANDIDATES_NAME
    options = EvalOptions(
        retrieval=RetrievalProtocol(queries=args.queries, negatives=args.negatives, seed=args.seed),
        candidates_file=str(lists) if lists.is_file() else None, score=scorer(config, args),
        image_cache=config.image_cache, seed=args.seed,
    )  # fmt: skip
    metrics = evaluate(MVLT.from_pretrained(model_dir), test_set, list(tasks), options, out)
    if not lists.is_file():
        shutil.copyfile(out / CANDIDATES_NAME, lists)
    result = {
        f"{d}_r{k}": float(metrics[names.recall(d, k, args.negatives)])
        for d in names.DIRECTIONS
        for k in names.RECALL_KS
    }
    if "recognition" in tasks:
        result.update(
            mcr_acc=float(metrics[names.recognition("category", "acc")]),
            scr_acc=float(metrics[names.recognition("subcategory", "acc")]),
        )
    return result


def run(args: argparse.Namespace) -> dict[str, object]:
    if args.out.exists():
        raise SystemExit(f"time_to_accuracy: {args.out} exists; remove it (every stage must be on the clock)")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = training_config(args)
    config.validate()  # a bad flag is refused before --out exists, so the same command can be re-run
    if args.finetune_minutes:
        finetune_config(config, args).validate()
    test_set = open_catalogue(config.data, split=args.split, **config.data_options)
    args.out.mkdir(parents=True)
    weights = config.resolved_loss_weights()
    tasks = FINETUNED_TASKS if weights["category"] or weights["subcategory"] else ("retrieval",)
    points: list[dict[str, float]] = []
    reached = None
    for chunk in range(10_000):
        result = train(config, resume=chunk > 0)
        train_done = time.perf_counter()
        recall = score(Path(config.out), test_set, config, args, args.out / f"eval-{chunk:02d}", tasks)
        point = {
            "minutes": round((time.perf_counter() - started) / 60, 2), "step": result.steps,
            "samples": result.steps * config.batch_size, "total_steps": result.total_steps,
            "eval_seconds": round(time.perf_counter() - train_done, 1), "score": scorer(config, args),
            **recall,
        }  # fmt: skip
        points.append(point)
        print(f"time_to_accuracy: {json.dumps(point)}", flush=True)
        if reached is None and min(recall["tir_r5"], recall["itr_r5"]) >= args.target:
            reached = point
            break
        if result.steps >= result.total_steps:  # the fitted run is over
            break
    finetuned = None
    if args.finetune_minutes:
        fine = finetune_config(config, args)
        result = train(fine)
        train_done = time.perf_counter()
        scores = score(Path(fine.out), test_set, fine, args, args.out / "eval-finetuned", FINETUNED_TASKS)
        finetuned = {
            "minutes": round((time.perf_counter() - started) / 60, 2), "step": result.steps,
            "total_steps": result.total_steps, "eval_seconds": round(time.perf_counter() - train_done, 1),
            "score": scorer(fine, args), **scores, "recipe": recipe(fine),
        }  # fmt: skip
        print(f"time_to_accuracy: fine-tuned {json.dumps({**finetuned, 'recipe': '...'})}", flush=True)
    return {
        "benchmark": "time_to_accuracy",
        "command": "python benchmarks/time_to_accuracy.py " + " ".join(sys.argv[1:]),
        "target": {"r5": args.target, "queries": args.queries, "negatives": args.negatives},
        "split": args.split,
        "caches_on_clock": args.shared_caches is None,
        "recipe": recipe(config),
        "minutes_to_target": reached["minutes"] if reached else None,
        "steps_to_target": reached["step"] if reached else None,
        "samples_to_target": reached["samples"] if reached else None,
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
        "points": points,
        "finetuned": finetuned,
        "machine": machine(),
    }


def draw(records: dict[str, dict[str, object]], path: Path) -> None:
    """R@5 against minutes, one panel per direction, one line per run (named by its key)."""
    series = {
        label: {
            f"R@5, {d.upper()}": [(0.0, 0.0)] + [(p["minutes"], 100 * p[f"{d}_r5"]) for p in record["points"]]
            for d in names.DIRECTIONS
        }
        for label, record in records.items()
    }
    target = 100 * next(iter(records.values()))["target"]["r5"]
    reference = {f"R@5, {d.upper()}": target for d in names.DIRECTIONS}
    draw_curves(series, reference, panel=(420, 260), quantity="(%)", x_name="minutes").save(path)


def draw_kept(paths: list[Path], picture: Path) -> None:
    """Redraw kept runs' JSON side by side, each named by its file's stem; nothing is trained."""
    draw({path.stem: json.loads(path.read_text(encoding="utf-8")) for path in paths}, picture)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.redraw:
        draw_kept(args.redraw, args.picture)
        return 0
    try:
        record = run(args)
    except (ConfigError, DataError, FileNotFoundError) as err:  # a flag or a file: one line naming it
        print(f"time_to_accuracy: {err}", file=sys.stderr)
        return 2
    text = json.dumps(record, indent=2, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.picture:
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        draw({"this run": record}, args.picture)
    return 0 if record["minutes_to_target"] is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
