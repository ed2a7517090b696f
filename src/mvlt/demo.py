"""``mvlt demo``: the whole pipeline, run the way a newcomer meets the project.

A catalogue (the procedural synthetic one by default, or ``--data`` with real photos) ->
pre-training (the default recipe: ITC + ITM + MLM + MIR) -> fine-tuning the recognition heads,
with ITC and ITM kept on so the one model both searches and tags -> evaluation (TIR / ITR with
every scorer, M-CR / S-CR, MIG) -> ``report.html``, ending with the headline metrics.

Everything lands in ``--out`` (default ``runs/demo``): ``pretrain/`` and ``model/`` are training
runs (``model/`` is the fine-tuned checkpoint, ``MVLT.from_pretrained``-loadable), and
``metrics.json`` / ``report.html`` the evaluation. Ctrl-C stops cleanly with a checkpoint;
``mvlt demo --out DIR --resume`` continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .exits import ERRORS, UsageError, check_number, fail
from .fileio import atomic_write_text
from .runtime import Precision, cpu_has_native_bf16, faster_precision
from .train.teachers.sources import parse_sources

PLAN_NAME = "demo.json"
DEFAULT_MINUTES = 6.5
"""Training minutes by default: with evaluation the demo ends within 10 minutes on 2 cores."""
FINETUNE_SHARE = 0.25
"""Share of the training budget spent fine-tuning (recognition heads, with ITC and ITM kept on)."""
SYNTHETIC = "synthetic"
FINETUNE_MATCHING = {"itc": 1.0, "itm": 3.0}
"""Fine-tuning keeps the matching objectives next to recognition: fine-tuning the encoder for
recognition alone would undo the alignment retrieval needs (the paper scores retrieval on the
pre-trained model; the demo's one model does both)."""


@dataclass
class DemoPlan:
    """Every choice of a demo run, saved to ``out/demo.json`` so ``--resume`` repeats it exactly."""

    data: str
    data_options: dict[str, Any]
    model: str
    image_size: int
    batch_size: int
    tokenizer: str | None
    pretrain_steps: int
    pretrain_lr: float
    finetune_steps: int
    finetune_lr: float
    queries: int
    mig_images: int
    seed: int
    threads: int | None
    workers: int
    pretrain_precision: str = "auto"
    finetune_precision: str = "auto"
    """Each stage's arithmetic, chosen by timing its steps (plans saved before these fields: auto)."""
    teachers: list[str] | None = None
    """``--teachers``: pretrained knowledge brought in while training (``mvlt.train.teachers``)."""
    train_minutes: float | None = None
    """Minutes of training the step counts were fitted to (``--minutes``; None in older plans).
    Each stage re-fits its steps to its share once its real rate is known (``fit_minutes``)."""
    eval_minutes: float | None = None
    """The planner's estimate of what evaluation adds (its ITM pairs at the timed rate)."""
    image_cache: str = "auto"
    """Decoded-image cache of real photos (``TrainConfig.image_cache``); the planner times steps
    reading from it, as training will."""

    @classmethod
    def load(cls, path: Path) -> DemoPlan:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="pre-train, fine-tune and evaluate a small MVLT end to end, and write a report",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--data", default=SYNTHETIC, help="'synthetic' (default) or a manifest / Fashion-Gen file")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training minutes, pre-training + fine-tuning (default 6.5)",
    )
    p.add_argument("--model", default="mvlt_nano", help="model variant (default mvlt_nano)")
    p.add_argument("--image-size", type=int, default=None, help="px (default 64 synthetic, 96 real photos)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch (default 64)")
    p.add_argument("--products", type=int, default=3000, help="synthetic catalogue size (default 3000)")
    p.add_argument("--queries", type=int, default=None, help="retrieval queries (default 500)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="data loader processes (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-bad-rows", action="store_true", help="leave out unusable catalogue rows (counted)")
    p.add_argument("--image-cache", default="auto", metavar="DIR",
                   help="decoded-image cache of real photos: auto (default), off, or a folder")  # fmt: skip
    p.add_argument(
        "--teachers",
        default=None,
        help="pretrained knowledge while training: text-init,text,image,cross or all, text-raw,image-raw "
        "(needs `make teachers`; the BERT vocabulary)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    p.add_argument("--overwrite", action="store_true", help="start again, deleting an earlier demo in --out")
    p.set_defaults(run=run_demo)


def stage(number: int, title: str) -> None:
    print(f"\n== [{number}/4] {title}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    """Errors end as one line with the exit code of every command (:mod:`mvlt.exits`)."""
    out: Path = args.out
    try:
        plan = load_or_make_plan(args)
    except ERRORS as err:
        return fail("demo", err)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    try:
        return run_stages(plan, args)
    except KeyboardInterrupt:  # between the trainer's own signal handling: setup, evaluation
        return _interrupted(out, "SIGINT")
    except ERRORS as err:
        return fail("demo", err)


def load_or_make_plan(args: argparse.Namespace) -> DemoPlan:
    """The saved plan (``--resume``) or a new one, saved; refuses to mix two demos in ``--out``."""
    out: Path = args.out
    plan_path = out / PLAN_NAME
    if args.resume:
        if not plan_path.is_file():
            raise UsageError(f"nothing to resume in {out} ({PLAN_NAME} is missing)")
        return DemoPlan.load(plan_path)
    if plan_path.exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a demo; pass --resume to continue it or --overwrite")
    for flag, value, rule in (
        ("--image-size", args.image_size, "image_size"), ("--minutes", args.minutes, "positive"),
        ("--batch-size", args.batch_size, "count"), ("--products", args.products, "count"),
        ("--queries", args.queries, "count"), ("--threads", args.threads, "count"),
        ("--workers", args.workers, "whole"),
    ):  # fmt: skip
        check_number(flag, value, rule)
    plan = make_plan(args)
    out.mkdir(parents=True, exist_ok=True)
    plan.save(plan_path)
    return plan


def run_stages(plan: DemoPlan, args: argparse.Namespace) -> int:
    """Data, pre-training, fine-tuning, evaluation; each training stage resumes from its checkpoint."""
    from .train import TrainConfig, train

    out: Path = args.out
    started = time.perf_counter()
    stage(1, "data")
    train_set, test_set = open_splits(plan)
    print(f"  {train_set.source}: {len(train_set)} training and {len(test_set)} test items")

    taught = f", teachers {','.join(plan.teachers)}" if plan.teachers else ""
    stage(2, f"pre-training {plan.model} (ITC + ITM + MLM + MIR{taught}), {plan.pretrain_steps} steps")
    common = {
        "data": plan.data, "data_options": plan.data_options, "image_size": plan.image_size,
        "batch_size": plan.batch_size, "seed": plan.seed, "threads": plan.threads, "workers": plan.workers,
        "log_every": 25, "checkpoint_every": 100, "keep_checkpoints": 1, "image_cache": plan.image_cache,
        "teachers": plan.teachers,
    }  # fmt: skip
    pre = TrainConfig(
        task="pretrain", model=plan.model, tokenizer=plan.tokenizer, steps=plan.pretrain_steps,
        lr=plan.pretrain_lr, out=str(out / "pretrain"), precision=plan.pretrain_precision,
        fit_minutes=stage_minutes(plan, "pretrain"), **common,
    )  # fmt: skip
    result = train(pre, resume=_started(out / "pretrain"), overwrite=args.overwrite)
    trained_seconds = result.seconds
    if result.interrupted:
        return _interrupted(out, result.interrupted)

    stage(3, f"fine-tuning the recognition heads (ITC and ITM kept on), {plan.finetune_steps} steps, "
             "then fitting them as linear probes")  # fmt: skip
    fine = TrainConfig(
        task="finetune", init=str(out / "pretrain"), steps=plan.finetune_steps, lr=plan.finetune_lr,
        out=str(out / "model"), loss_weights=FINETUNE_MATCHING, precision=plan.finetune_precision,
        fit_minutes=stage_minutes(plan, "finetune"), fit_heads=True, **common,
    )  # fmt: skip
    result = train(fine, resume=_started(out / "model"), overwrite=args.overwrite)
    trained_seconds += result.seconds
    if result.interrupted:
        return _interrupted(out, result.interrupted)

    stage(4, "evaluation: retrieval, recognition, masked image generation")
    evaluation_started = time.perf_counter()
    metrics = evaluate_model(out / "model", test_set, plan, out, train_set=train_set)
    metrics.update(record_training_time(out, plan, trained_seconds, time.perf_counter() - evaluation_started))
    print_headline(metrics, test_set, plan, out, time.perf_counter() - started)
    return 0


def planned_precisions() -> tuple[str, ...]:
    """The arithmetic the planner times: bf16 next to fp32 only on a CPU that computes it natively.

    On CUDA the trainer's ``auto`` (bf16 where supported) decides; the planner times the CPU step.
    """
    if torch.cuda.is_available():
        return ("auto",)
    return ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",)


def make_plan(args: argparse.Namespace) -> DemoPlan:
    """Defaults for the data at hand; the step counts fit ``--minutes`` on this machine."""
    synthetic = args.data == SYNTHETIC
    image_size = args.image_size or (64 if synthetic else 96)
    options = {"num_products": args.products, "image_size": image_size, "seed": args.seed}
    options = options if synthetic else {}
    if getattr(args, "skip_bad_rows", False):
        options["skip_bad_rows"] = True
    minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES
    try:
        teachers = parse_sources(getattr(args, "teachers", None)) or None
    except ValueError as err:
        raise UsageError(f"--teachers: {err}") from None
    if teachers:
        from .train.teachers.models import require_teachers

        require_teachers()  # before the planner's minutes, not after them
    if teachers and synthetic and {"text-init", "text", "cross", "text-raw"} & set(teachers):
        raise UsageError(
            "--teachers text-init/text/cross/text-raw need the BERT vocabulary; "
            "the synthetic demo learns its own"
        )
    plan = DemoPlan(
        data=args.data, data_options=options, model=args.model, image_size=image_size,
        batch_size=args.batch_size, tokenizer="train" if synthetic else None, pretrain_steps=0,
        pretrain_lr=1e-3, finetune_steps=0, finetune_lr=5e-4, queries=args.queries or 500,
        mig_images=16, seed=args.seed, threads=args.threads, workers=args.workers,
        image_cache=getattr(args, "image_cache", "auto"), teachers=teachers,
    )  # fmt: skip
    steps = seconds_per_step(plan)
    seconds, plan.pretrain_precision = steps["pretrain"]
    tune_seconds, plan.finetune_precision = steps["finetune"]
    plan.train_minutes = minutes
    plan.pretrain_steps = max(20, int(60 * stage_minutes(plan, "pretrain") / seconds))
    plan.finetune_steps = max(10, int(60 * stage_minutes(plan, "finetune") / tune_seconds))
    plan.eval_minutes = round(steps["evaluation"][0] / 60, 2)
    print(
        f"mvlt demo: {minutes:g} min of training here: {plan.pretrain_steps} pre-training steps "
        f"({seconds:.2f} s each, {plan.pretrain_precision}) + {plan.finetune_steps} fine-tuning steps "
        f"({tune_seconds:.2f} s each, {plan.finetune_precision}), re-fitted to the minutes once each "
        f"stage's real rate is known; evaluation adds about {plan.eval_minutes:.1f} min"
    )
    return plan


def stage_minutes(plan: DemoPlan, task: str) -> float | None:
    """A training stage's share of ``--minutes`` (None for plans saved before the field)."""
    if plan.train_minutes is None:
        return None
    share = FINETUNE_SHARE if task == "finetune" else 1 - FINETUNE_SHARE
    return share * plan.train_minutes


def seconds_per_step(plan: DemoPlan) -> dict[str, tuple[float, str]]:
    """Seconds per step and the arithmetic to train in, per stage: a few optimizer steps of the
    demo's model and objectives on one real batch in each of :func:`planned_precisions`,
    interleaved (the median, not the best: the plan must hold for a whole run), plus the batch's
    loading time. bf16 is kept only when ``runtime.BF16_MIN_SPEEDUP`` times as fast, as
    ``--precision auto`` does; the stage then trains in what was timed, so plan and run agree."""
    from .data import PretrainDataset, bert_tokenizer, open_image_cache
    from .model import LossWeights, create_model
    from .train import TrainConfig
    from .train.optim import build_optimizer

    if plan.threads:
        torch.set_num_threads(plan.threads)
    train_set, test_set = open_splits(plan)
    tokenizer = bert_tokenizer()  # vocabulary size barely changes the step time
    model = create_model(
        plan.model, image_size=plan.image_size, vocab_size=tokenizer.vocab_size, num_categories=8,
        num_subcategories=8,
    )  # fmt: skip
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01)  # the trainer's
    rows = planning_rows(len(train_set), plan.batch_size, plan.seed)
    cache = open_image_cache(train_set, plan.image_size, "pad", plan.image_cache)  # training's, built once
    timings = {}
    for task, schedule in (("pretrain", "masked"), ("finetune", "clean")):
        config = TrainConfig(task=task, loss_weights=FINETUNE_MATCHING if task == "finetune" else {})
        weights = config.resolved_loss_weights()
        dataset = PretrainDataset(
            train_set, tokenizer, image_size=plan.image_size, mask_images=schedule == "masked",
            mlm=bool(weights["mlm"]), itm=False, image_cache=cache,
        )  # fmt: skip
        start = time.perf_counter()
        batch = dataset.collate([dataset[i] for i in rows])
        load = time.perf_counter() - start
        batch["category_labels"] = batch["subcategory_labels"] = torch.zeros(len(rows), dtype=torch.long)
        step: dict[str, list[float]] = {name: [] for name in planned_precisions()}
        for _ in range(5):
            for name, times in step.items():
                start = time.perf_counter()
                optimizer.zero_grad()
                with Precision(name, "planning", "cpu").autocast():
                    loss = model.forward_loss(batch, LossWeights(**weights), itm_negatives="itc")["total"]
                loss.backward()
                optimizer.step()
                times.append(time.perf_counter() - start)
        median = {name: statistics.median(times[1:]) for name, times in step.items()}
        name = faster_precision(median)
        timings[task] = (median[name] + load * _loading_share(plan), name)
    pairs = evaluation_pairs(plan.queries, len(set(test_set.product_ids)))
    timings["evaluation"] = (pairs * seconds_per_pair(model, batch, timings["finetune"][1]), "")
    return timings


def evaluation_pairs(queries: int, products: int) -> int:
    """The ITM pairs of the 1 + K protocol: each query's list in both directions, sharing the positive."""
    negatives = min(100, products - 1)
    return min(queries, products) * (2 * negatives + 1)


def seconds_per_pair(model: torch.nn.Module, batch: dict[str, Any], precision: str) -> float:
    """What one ITM pair costs the evaluator's staged scorer (mvlt.eval.scoring): the joint stages
    per pair, plus half an image pass and half a text pass (lists share their query's side)."""
    images, ids, mask = batch["images"], batch["input_ids"], batch["attention_mask"]
    model.eval()
    timed = []
    with torch.inference_mode(), Precision(precision, "planning", "cpu").autocast():
        for _ in range(3):
            start = time.perf_counter()
            visual, _ = model.unimodal_features(images=images)
            _, text = model.unimodal_features(input_ids=ids, attention_mask=mask)
            joint = time.perf_counter()
            model.match_score_joint(visual, text, mask)
            end = time.perf_counter()
            timed.append((end - joint) + 0.5 * (joint - start))
    model.train()
    return min(timed) / len(images)


def planning_rows(n: int, batch: int, seed: int) -> list[int]:
    """The rows of the batch the planner times: a seeded random sample, like a training batch. The
    first rows of a catalogue are no sample of it (H&M's first 64 texts average 19 words where the
    split averages 31, and a batch pads to its longest text), and a step timed on them planned
    0.57 s where training ran 1.1-1.2 s."""
    return sorted(random.Random(seed).sample(range(n), min(batch, n)))


def _loading_share(plan: DemoPlan) -> float:
    """How much of a batch's loading time adds to a step: the loader processes hide it only when
    they have cores of their own (on 2 cores with 2 compute threads they take the compute's)."""
    cores = os.cpu_count() or 1
    threads = plan.threads or torch.get_num_threads()
    return 1.0 / max(1, plan.workers) if cores >= threads + plan.workers else 1.0


def open_splits(plan: DemoPlan) -> tuple[Any, Any]:
    from .data import open_catalogue

    train_set = open_catalogue(plan.data, split="train", **plan.data_options)
    test_set = open_catalogue(plan.data, split="test", **plan.data_options)
    return train_set, test_set


def _started(run: Path) -> bool:
    """Resume a training stage when it has a checkpoint (it may be finished: then it just returns)."""
    return (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())


def _interrupted(out: Path, why: str) -> int:
    print(f"\nmvlt demo: stopped ({why}); progress is saved. Continue: mvlt demo --out {out} --resume")
    return 130 if why == "SIGINT" else 143 if why == "SIGTERM" else 0


def evaluate_model(
    checkpoint: Path, test_set: Any, plan: DemoPlan, out: Path, train_set: Any = None
) -> dict[str, Any]:
    """Evaluate on ``test_set``; ``metrics.json`` also records what the training split left out."""
    from .data.audit import audit
    from .eval import EvalOptions, RetrievalProtocol, evaluate, format_table
    from .eval.retrieval import normalise_text, product_rows
    from .model import MVLT

    model = MVLT.from_pretrained(checkpoint)
    # The 1 + 100 protocol; a very small test split (tiny demos) gets as many negatives as it has:
    # each query product's other products with another text (one row per product, the first).
    texts = Counter(normalise_text(test_set.texts[r]) for r in product_rows(test_set.product_ids).values())
    negatives = min(100, sum(texts.values()) - max(texts.values()))
    protocol = RetrievalProtocol(queries=plan.queries, negatives=negatives, seed=plan.seed)
    options = EvalOptions(
        retrieval=protocol, seed=plan.seed, mig_images=plan.mig_images, progress=True,
        image_cache=plan.image_cache,
        checkpoint=str(checkpoint), training_data=audit(train_set) if train_set is not None else None,
        training_logs=tuple(str(p) for p in (out / "pretrain" / "metrics.jsonl", checkpoint / "metrics.jsonl")
                            if p.is_file()),
    )  # fmt: skip
    metrics = evaluate(model, test_set, "all", options, out)
    print(format_table(metrics))
    return metrics


def majority_share(labels: list[str]) -> float:
    return Counter(labels).most_common(1)[0][1] / len(labels) if labels else 0.0


def record_training_time(
    out: Path, plan: DemoPlan, seconds: float, evaluation_seconds: float
) -> dict[str, Any]:
    """Planned and actual training and evaluation minutes (this invocation's, for a resumed demo),
    printed and added to ``metrics.json``: the plan is a promise the run is held to."""
    times = {
        "train_minutes_planned": plan.train_minutes, "train_minutes_actual": round(seconds / 60, 2),
        "eval_minutes_planned": plan.eval_minutes, "eval_minutes_actual": round(evaluation_seconds / 60, 2),
    }  # fmt: skip
    planned = f"{plan.train_minutes:g}" if plan.train_minutes is not None else "?"
    print(f"  training: {times['train_minutes_actual']:.1f} min of the {planned} planned")
    if plan.eval_minutes is not None:
        print(f"  evaluation: {times['eval_minutes_actual']:.1f} min (planned about {plan.eval_minutes:.1f})")
    path = out / "metrics.json"
    if path.is_file():
        atomic_write_text(
            path, json.dumps({**json.loads(path.read_text(encoding="utf-8")), **times}, indent=2) + "\n"
        )
    return times


def print_headline(metrics: dict[str, Any], test_set: Any, plan: DemoPlan, out: Path, seconds: float) -> None:
    from .eval import names
    from .eval.retrieval import scorer_tag

    k = metrics["protocol"]["retrieval"]["negatives"]
    chance = 1 / (k + 1)
    scorers = metrics["protocol"]["retrieval"]["scorers"]
    mcr, scr = metrics[names.recognition("category", "acc")], metrics[names.recognition("subcategory", "acc")]
    psnr = metrics.get(names.generation("psnr", "random_grid"))
    print(f"\nmvlt demo done in {seconds / 60:.1f} min on {test_set.source} [test]:")
    for name in scorers:
        tir, itr = (metrics[f"{scorer_tag(name)}_{names.recall(d, 1, k)}"] for d in names.DIRECTIONS)
        print(
            f"  {name:8} TIR R@1 {100 * tir:.1f} %, ITR R@1 {100 * itr:.1f} % "
            f"(chance {100 * chance:.1f} %, 1 + {k})"
        )
    majority = majority_share(test_set.categories), majority_share(test_set.subcategories)
    print(
        f"  M-CR accuracy {100 * mcr:.1f} % (majority class {100 * majority[0]:.1f} %), "
        f"S-CR accuracy {100 * scr:.1f} % (majority {100 * majority[1]:.1f} %)"
    )
    if psnr is not None:
        print(f"  MIG PSNR {psnr:.2f} dB (random grid, ratio 0.5)")
    print(f"  report: {out / 'report.html'}\n  metrics: {out / 'metrics.json'}\n  model: {out / 'model'}")
