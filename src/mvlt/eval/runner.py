"""``evaluate(model, catalogue, tasks, options, out_dir)``: run the downstream tasks, write the files.

Writes into ``out_dir``: ``metrics.json`` (a flat map metric name -> value, plus ``"protocol"``
holding every option that produced it), ``retrieval_candidates.json`` (the exact lists, re-runnable
with ``--candidates``), ``recognition.json`` (per-class scores, confusion matrices, unseen labels)
and ``report.html``. All writes are atomic.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.audit import audit
from ..data.image_cache import open_image_cache
from ..exits import UsageError
from ..fileio import atomic_write_text
from ..runtime import Precision, resolve_device, resolve_precision
from . import names
from .context import EvalContext
from .generation import run_generation
from .hubs import candidate_offsets
from .recognition import RecognitionOutcome, check_heads, run_recognition
from .report import render_report
from .retrieval import load_candidates, resolve_scorers, run_retrieval, save_candidates
from .run import ITM_SCORE_WORDS, EvalOptions, EvalRun
from .scoring import model_embedder, model_scorer, staged_pair_scorer

log = logging.getLogger("mvlt.eval")

TASKS = ("retrieval", "recognition", "generation")
METRICS_NAME = "metrics.json"
REPORT_NAME = "report.html"
CANDIDATES_NAME = "retrieval_candidates.json"
RECOGNITION_NAME = "recognition.json"
SCORER_WORDS = {
    "itm": "ITM on the joint pass of every pair",
    "itc": "ITC cosine of encode_texts and encode_images (one pass per image and per text)",
    "itc+itm": "the ITC order, its top {k} re-ranked by ITC logit (cosine / temperature) + ITM log-odds",
}
TOPUP_WORDS = {
    "category": "fill from the same main category, then from anywhere",
    "any": "fill from any other sub-category",
    "skip": "drop the query",
}


def parse_tasks(tasks: str | Iterable[str]) -> tuple[str, ...]:
    """``"all"``, one task, a comma-separated list or an iterable of them -> tasks in canonical order."""
    items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    chosen: set[str] = set()
    for item in (t.strip() for t in items):
        if item == "all":
            chosen.update(TASKS)
        elif item in TASKS:
            chosen.add(item)
        else:
            raise UsageError(f"--task: unknown task {item!r}; choose from {', '.join((*TASKS, 'all'))}")
    if not chosen:
        raise UsageError("--task: no task given")
    return tuple(t for t in TASKS if t in chosen)


def draw_rows(n: int, count: int | None, seed: int, stream: int) -> list[int]:
    """``count`` distinct rows of ``n`` (all when None or >= n), seeded, in ascending order."""
    if count is None or count >= n:
        return list(range(n))
    return sorted(np.random.default_rng([seed, stream]).choice(n, size=count, replace=False).tolist())


def evaluate(
    model: Any,
    catalogue: Any,
    tasks: str | Iterable[str],
    options: EvalOptions | None = None,
    out_dir: str | Path | None = None,
    *,
    tokenizer: Any = None,
    explicit_tasks: bool | None = None,
    bank: Any = None,
) -> dict[str, Any]:
    """Run ``tasks`` on ``catalogue``; write the files into ``out_dir`` (when given); return the metrics.

    Tasks asked for by name must be possible (recognition needs heads and label maps); with
    ``"all"`` a task the checkpoint cannot do is skipped and the reason recorded. ``bank``: the
    catalogue (a training split) that ``options.hub_bank`` draws its rows from.
    """
    options = options or EvalOptions()
    asked = parse_tasks(tasks)
    if explicit_tasks is None:
        explicit_tasks = not (isinstance(tasks, str) and "all" in tasks.split(","))
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("the checkpoint has no tokenizer (tokenizer_config.json); pass one (--vocab FILE)")
    scorers = resolve_scorers(options.score, getattr(model, "itc_head", None) is not None)
    if options.hub_bank and (bank is None or "retrieval" not in asked or scorers == ("itm",)):
        raise UsageError(
            "--hub-bank corrects the ITC scores of retrieval: it needs the retrieval task, an ITC scorer "
            "and a bank catalogue (mvlt evaluate opens --hub-split, default train)"
        )
    device = resolve_device(options.device)
    image_size = options.image_size or model.config.image_size
    if image_size % model.config.stride:
        raise ValueError(
            f"--image-size {image_size} is not divisible by the model's stride {model.config.stride}"
        )
    model.eval().to(device)
    if options.batch_size is None:
        options = dataclasses.replace(options, batch_size=128 if device.type == "cuda" else 8)
    disk_cache = open_image_cache(catalogue, image_size, options.resize, options.image_cache,
                                  progress=options.progress)  # fmt: skip
    ctx = EvalContext(
        model, catalogue, tokenizer, device, "fp32", image_size, options.resize, options.batch_size,
        options.cache_mb << 20, options.progress, disk_cache,
    )  # fmt: skip
    choice = resolve_precision(options.precision, device, workload=ctx.scoring_workload(scorers))
    ctx.precision = choice.name
    log.info("evaluating on %s in %s (%s)", device, choice.name, choice.reason)
    protocol = _protocol(model, catalogue, asked, options, device, choice, image_size, scorers)
    run = EvalRun(model, catalogue, options, protocol, scorers=scorers, bank=bank)
    with torch.inference_mode():
        for task in asked:
            if task == "recognition" and not explicit_tasks:
                try:
                    check_heads(model)
                except ValueError as err:
                    run.skipped[task] = str(err)
                    log.warning("skipping recognition: %s", err)
                    continue
            start = time.perf_counter()
            getattr(_Tasks, task)(run, ctx)
            run.seconds[task] = time.perf_counter() - start
            log.info("%s done in %.1f s", task, run.seconds[task])
    result: dict[str, Any] = {**run.metrics, "protocol": run.protocol, "skipped_tasks": dict(run.skipped)}
    if out_dir is not None:
        write_outputs(run, Path(out_dir))
    return result


class _Tasks:
    """One function per task: run it, store the outcome and its metrics on the run."""

    @staticmethod
    def retrieval(run: EvalRun, ctx: EvalContext) -> None:
        opts = run.options
        candidates = load_candidates(opts.candidates_file) if opts.candidates_file else None
        needs_itc = any(s != "itm" for s in run.scorers)
        chunk = ctx.batch_size * 8
        embedder = model_embedder(ctx.model, ctx, chunk, ctx.autocast, opts.mirror) if needs_itc else None
        hub_offsets = _hub_offsets(run, ctx, embedder) if opts.hub_bank and embedder is not None else None
        config = ctx.model.config
        staged = config.fusion_stage > 1 and config.mask_padding and opts.itm_score == "log_odds"
        pair_scorer = (
            staged_pair_scorer(ctx.model, ctx, ctx.autocast, chunk, opts.progress) if staged else None
        )
        out = run_retrieval(
            run.catalogue, ctx, model_scorer(ctx.model, opts.itm_score, ctx.autocast), opts.retrieval,
            candidates=candidates, batch_size=opts.batch_size, progress=opts.progress,
            scorers=run.scorers, embedder=embedder, rerank_top=opts.rerank_top,
            itc_scale=1.0 / float(ctx.model.itc_head.clamped_temperature()) if needs_itc else 1.0,
            pair_scorer=pair_scorer, hub_offsets=hub_offsets,
        )  # fmt: skip
        run.retrieval = out
        run.metrics.update(out.metrics)
        record = run.protocol["retrieval"]
        cset = out.candidates
        if candidates is not None:
            file_protocol = {
                k: v for k, v in cset.protocol.items() if k in ("topup", "seed", "products", "text_rule")
            }
            record.update(file_protocol)
            record.setdefault("topup", "as in the file")
            record.update(candidates_file=opts.candidates_file, queries=max(len(r) for r in cset.repeats))
        record.update(
            negatives=cset.negatives,
            repeats=len(cset.repeats),
            topup_words=TOPUP_WORDS.get(record["topup"], "as in the candidate file"),
            queries_evaluated=cset.num_queries,
            topped_up=cset.num_topped_up,
            skipped=cset.num_skipped,
        )

    @staticmethod
    def recognition(run: EvalRun, ctx: EvalContext) -> None:
        rows = draw_rows(len(run.catalogue), run.options.recognition_items, run.options.seed, 2)
        out = run_recognition(ctx, rows)
        run.recognition = out
        run.metrics.update(out.metrics)
        run.protocol["recognition"]["items"] = len(rows)

    @staticmethod
    def generation(run: EvalRun, ctx: EvalContext) -> None:
        opts = run.options
        rows = draw_rows(len(run.catalogue), opts.mig_images, opts.seed, 3)
        out = run_generation(
            ctx, rows, strategies=opts.mig_strategies, ratio=opts.mask_ratio, unit=opts.mask_unit,
            seed=opts.seed, examples=opts.examples, use_text=opts.mig_text,
        )  # fmt: skip
        run.generation = out
        run.metrics.update(out.metrics)
        run.protocol["generation"]["images"] = len(rows)


def _hub_offsets(run: EvalRun, ctx: EvalContext, embedder: Any) -> Any:
    """The hub correction's offsets as a function of the candidate lists (:mod:`.hubs`): a bank
    of ``hub_bank`` rows of ``run.bank``, drawn with the seed, embedded as the lists are."""
    opts = run.options
    cache = open_image_cache(run.bank, ctx.image_size, opts.resize, opts.image_cache, progress=opts.progress)
    bank_ctx = EvalContext(
        ctx.model, run.bank, ctx.tokenizer, ctx.device, ctx.precision, ctx.image_size, opts.resize,
        ctx.batch_size, ctx.cache_bytes, opts.progress, cache,
    )  # fmt: skip
    bank = model_embedder(ctx.model, bank_ctx, ctx.batch_size * 8, ctx.autocast, opts.mirror)
    rows = draw_rows(len(run.bank), opts.hub_bank, opts.seed, 4)
    temperature = float(ctx.model.itc_head.clamped_temperature().detach())
    run.protocol["retrieval"]["hub_bank"] = {
        "rows": len(rows), "catalogue": str(getattr(run.bank, "source", "")),
        "split": getattr(run.bank, "split", None), "temperature": temperature,
        "rule": "ITC cosine minus tau * logsumexp_b(cos(candidate, b) / tau) over the bank's texts "
        "(TIR) or photos (ITR)",
    }  # fmt: skip
    return lambda cset: candidate_offsets(cset, embedder, bank, rows, temperature)


def _protocol(
    model: Any, catalogue: Any, tasks: Sequence[str], options: EvalOptions, device: torch.device,
    precision: Precision, image_size: int, scorers: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    from .. import __version__

    prot: dict[str, Any] = {
        "checkpoint": options.checkpoint,
        "model": _describe_model(model),
        "catalogue": getattr(catalogue, "source", type(catalogue).__name__),
        "split": getattr(catalogue, "split", None) or "(all rows)",
        "items": len(catalogue),
        "tasks": list(tasks),
        "device": str(device),
        "precision": precision.name,
        "precision_requested": options.precision,
        "precision_reason": precision.reason,
        "image_size": image_size,
        "resize": options.resize,
        "batch_size": options.batch_size,
        "mvlt_version": __version__,
        "torch_version": torch.__version__,
    }
    if hasattr(catalogue, "skips"):  # what the catalogue left out: skipped rows, duplicates, no labels
        prot["data"] = audit(catalogue)
    if options.training_data:
        prot["training_data"] = options.training_data
    if "retrieval" in tasks:
        prot["retrieval"] = {
            **dataclasses.asdict(options.retrieval),
            "candidates_file": options.candidates_file,
            "pool": "same sub-category",
            "positive": "product level: the query product's first row (image and text)",
            "text_rule": "negatives: different product_id and different text (lower-cased, spaces collapsed)",
            "directions": "TIR and ITR rank the same candidate lists",
            "score": scorers[0],
            "scorers": list(scorers),
            "score_words": {
                s: SCORER_WORDS[s].format(k=options.rerank_top)
                + (f"; {ITM_SCORE_WORDS[options.itm_score]}" if s != "itc" else "")
                for s in scorers
            },
            "rerank_top": options.rerank_top if "itc+itm" in scorers else None,
            "mirror": options.mirror,
            "metric_names": "headline keys are the first scorer's; every scorer's also carry its prefix "
            "(itc_, itm_, itc_itm_)",
        }
    if "recognition" in tasks:
        prot["recognition"] = {
            "seed": options.seed,
            "unseen_labels": "excluded from accuracy and F1, reported with counts",
            "unlabelled": "rows with an empty label: excluded from accuracy and F1, counted",
            "macro_f1": "mean F1 over classes present in truth or prediction (scikit-learn)",
        }
    if "generation" in tasks:
        prot["generation"] = {
            "seed": options.seed,
            "strategies": list(options.mig_strategies),
            "ratio": options.mask_ratio,
            "unit": options.mask_unit,
            "text": options.mig_text,
            "image_size": image_size,
            "psnr": "peak 1.0, reconstruction clamped to [0, 1], mean over images",
            "ssim": "Gaussian 11x11, sigma 1.5, K=(0.01, 0.03), valid windows, mean over images",
            "masked": "PSNR over masked pixels; SSIM over windows centred on masked pixels",
        }
    return prot


def _describe_model(model: Any) -> str:
    config = model.config
    return (
        f"MVLT depths {list(config.depths)}, widths {list(config.embed_dims)}, "
        f"{model.num_parameters():,} parameters, "
        f"heads: {config.num_categories} categories / {config.num_subcategories} sub-categories"
    )


# ---------------------------------------------------------------------------------------- output
def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return _json_safe(value.item())
    return value


def write_outputs(run: EvalRun, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**run.metrics, "protocol": run.protocol, "skipped_tasks": run.skipped}
    atomic_write_text(
        out_dir / METRICS_NAME, json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n"
    )
    if run.retrieval is not None:
        save_candidates(run.retrieval.candidates, out_dir / CANDIDATES_NAME)
    if run.recognition is not None:
        atomic_write_text(
            out_dir / RECOGNITION_NAME,
            json.dumps(_json_safe(_recognition_details(run.recognition)), indent=1) + "\n",
        )
    atomic_write_text(out_dir / REPORT_NAME, render_report(run))
    log.info("wrote %s", ", ".join(str(out_dir / n) for n in (METRICS_NAME, REPORT_NAME)))


def _recognition_details(out: RecognitionOutcome) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for f, rep in out.reports.items():
        entry: dict[str, Any] = {"unseen_labels": dict(out.unknown[f])}
        if rep is not None:
            class_names = out.class_names[f]
            entry.update(
                accuracy=rep.accuracy,
                macro_f1=rep.macro_f1,
                items=rep.items,
                classes=[class_names[i] for i in rep.labels],
                per_class={
                    class_names[c.label]: dataclasses.asdict(c) | {"name": class_names[c.label]}
                    for c in rep.per_class
                },
                confusion=rep.confusion.tolist(),
            )
        details[f] = entry
    return details


def format_table(metrics: dict[str, Any]) -> str:
    """The short summary printed by ``mvlt evaluate``."""
    prot = metrics.get("protocol", {})
    lines = []
    r = prot.get("retrieval")
    if r is not None and names.retrieval_count("queries", r["negatives"]) in metrics:
        k = r["negatives"]
        queries, topped, skipped = (
            metrics[names.retrieval_count(stat, k)] for stat in ("queries", "topped_up", "skipped")
        )
        lines.append(
            f"retrieval 1+{k} same sub-category: {queries} queries over {r['repeats']} repeat(s), "
            f"top-up {r['topup']} ({topped} topped up, {skipped} skipped), ties {r['ties']}"
        )
        head = ("R@1", "R@5", "R@10", "SumR", "mean rank", "tied")
        lines.append("  " + " " * 4 + "".join(f"{h:>10}" for h in head))
        for d in names.DIRECTIONS:
            if names.recall(d, 1, k) in metrics:
                row = [100 * metrics[names.recall(d, kk, k)] for kk in names.RECALL_KS]
                row += [
                    metrics[names.sum_recall(d, k)],
                    metrics[names.mean_rank(d, k)],
                    metrics[names.tied(d, k)],
                ]
                lines.append(f"  {d.upper():4}" + "".join(f"{v:10.2f}" for v in row))
        speed = metrics[names.RETRIEVAL_PAIRS_PER_S]
        lines.append(
            f"  (R@k in %; chance R@k = k/{k + 1}; tied = negatives per query scoring exactly the positive's"
            f" score; {speed:.1f} pairs/s)"
        )
    for f, label in (("category", "M-CR"), ("subcategory", "S-CR")):
        if names.recognition(f, "acc") in metrics:
            acc, f1, sumc, items, unknown = (
                metrics[names.recognition(f, stat)]
                for stat in ("acc", "macro_f1", "sumc", "items", "unknown_items")
            )
            unlabelled = metrics.get(names.recognition(f, "unlabelled_items"), 0)
            lines.append(
                f"{label}: accuracy {100 * acc:.2f} %, macro-F1 {f1:.3f}, SumC {sumc:.2f} ({items} items; "
                f"{unknown} with labels unseen in training and {unlabelled} without a label, excluded)"
            )
    g = prot.get("generation")
    if g is not None and names.MIG_IMAGES in metrics:
        lines.append(
            f"MIG over {metrics[names.MIG_IMAGES]} images (PSNR dB / SSIM; whole image | masked region):"
        )
        for s in g["strategies"]:
            psnr, ssim, psnr_m, ssim_m = (
                metrics[names.generation(stat, s, masked)]
                for masked in (False, True)
                for stat in ("psnr", "ssim")
            )
            lines.append(f"  {s:12} {psnr:6.2f} / {ssim:.4f} | {psnr_m:6.2f} / {ssim_m:.4f}")
    if "precision" in prot:
        lines.append(f"arithmetic: {prot['precision']} ({prot.get('precision_reason', 'requested')})")
    return "\n".join(lines)
