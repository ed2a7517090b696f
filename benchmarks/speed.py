"""Training and retrieval throughput of the paper configuration, against the machine's peak.

    python benchmarks/speed.py [--quick] [--json FILE]

Measures ``mvlt_tiny`` at 256 px with H&M-length texts (padded to the longest in the batch) on
2 threads, each measurement in a fresh process (its own peak RSS), with the glibc allocator
settings the ``mvlt`` command uses (``--no-malloc-tuning`` to compare):
1. a training step (forward + backward + AdamW, batch 8) in fp32 and bf16 autocast, as one batch
   of 8 and as two micro-batches of 4 (``--accumulation 2``: same gradients, smaller activations);
2. retrieval scoring: 1 + 100-pair queries (ITR: one image, 101 texts; TIR: one text, 101 images)
   through ``match_score`` in chunks of 8 pairs (the evaluator's CPU default), fp32 and bf16, and
   fp32 with int8 dynamic quantization of the linear layers (measured, not used: see the README);
3. model FLOPs per sample / pair (``torch.utils.flop_counter``) and the achieved fraction of the
   machine's matmul peak, bf16 and fp32, measured in the same run;
4. the whole 1 + 100 protocol as ``mvlt evaluate`` runs it with our default model (late fusion,
   ITC heads) and headline scorer (ITC, then ITM on each list's top 16 through the staged scorer),
   both directions, as pair slots ranked per second, on pools of several sizes (``PROTOCOL_POOLS``):
   one list alone (nothing shared between lists) and pools where lists share products, as in a
   real evaluation (per item, not per pair, is where ITC and staged ITM save their work).
"Released-equivalent" rows run the same model with the released code's extra work: text always
128 tokens without a padding mask, MLM logits at all 128 positions, the aggregation decoder, and for
retrieval the whole model (MLM head and decoder included) on all 101 pairs at once; in fp32 and,
where bf16 is native, in bf16, so that the closing lines compare best against best. The released
evaluator has nothing to share between lists (every pair is a whole pass), so its per-list rate
is its rate on any pool.
On CPUs without native bf16 our bf16 rows time a single step / a single chunk (they take minutes)
and the released-equivalent runs in fp32 only (in emulated bf16 a query would take an hour).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mvlt
from common import (
    count_flops,
    hm_text_lengths,
    machine,
    make_batch,
    matmul_peak_gflops,
    matmul_seconds,
    peak_rss_gb,
    timed,
    write_json,
)
from mvlt.eval.retrieval import RetrievalProtocol, run_retrieval
from mvlt.eval.scoring import model_embedder, model_scorer, staged_pair_scorer
from mvlt.model.config import PAPER_DESIGN
from mvlt.runtime import MALLOC_TUNING, cpu_has_native_bf16
from mvlt.train.optim import build_optimizer, param_groups

LENGTHS_ENV = "MVLT_BENCH_LENGTHS"


PROTOCOL_POOLS = {
    "full": [
        ("one list", 1, 101),
        ("hm ratio", 200, 482),
        ("hm ratio whole", 200, 482),
        ("1 in 8", 100, 800),
    ],
    "quick": [("one list", 1, 101), ("hm ratio", 50, 120), ("hm ratio whole", 50, 120), ("1 in 8", 25, 200)],
}
"""Queries and pool sizes of the protocol rows: a single list (nothing shared between lists: the
lower bound), the H&M test split's 1,000 queries per 2,408 products, and one query per 8 products
(e.g. 1,000 queries among 8,000 products), each scaled down: throughput depends on the ratio.
``whole``: ITM through whole encoder passes instead of the staged scorer, for comparison."""


def autocast(precision: str) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def lengths() -> list[int]:
    """Text lengths: computed once by the parent and handed to the workers through a file."""
    path = os.environ.get(LENGTHS_ENV)
    return json.loads(Path(path).read_text()) if path else hm_text_lengths()[0]


def build(args: argparse.Namespace) -> mvlt.MVLT:
    torch.manual_seed(0)
    # Both variants compute the paper's objectives (MIR + ITM + MLM on one joint pass): like for like.
    overrides = {"compat": "official"} if args.variant == "released" else dict(PAPER_DESIGN)
    return mvlt.create_model(args.model, image_size=args.image_size, **overrides)


def released_loss(model: mvlt.MVLT, batch: dict) -> torch.Tensor:
    """The released step's work: every head on every position, 128-token unmasked text."""
    out = model.forward_encoder(batch["masked_images"], batch["input_ids"])
    logits = model.mlm_logits(out.text[-1])
    mlm = F.cross_entropy(logits.flatten(0, 1).float(), batch["mlm_labels"].flatten(), ignore_index=-100)
    itm = F.cross_entropy(model.itm_logits(out).float(), batch["itm_labels"])
    mir = F.smooth_l1_loss(model.forward_decoder(out.visual).float(), batch["images"])
    return 10 * mir + itm + mlm


def train_worker(args: argparse.Namespace) -> dict:
    released = args.variant == "released"
    model = build(args).train()
    if released:  # the released code's AdamW (given the foreach kernel, which it did not ask for)
        optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, foreach=True)
    else:  # the trainer's: the fused kernel
        optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    fixed = 128 if released else (args.text_length or None)
    text_lengths = lengths()
    batches = [
        make_batch(args.batch_size, args.image_size, text_lengths, seed=s, fixed_length=fixed)
        for s in range(4)
    ]
    state = {"i": 0}

    def step() -> None:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        optimizer.zero_grad(set_to_none=True)
        for start in range(0, args.batch_size, args.micro_batch):
            part = {k: v[start : start + args.micro_batch] for k, v in batch.items()}
            with autocast(args.precision):
                loss = released_loss(model, part) if released else model.forward_loss(part)["total"]
            (loss * len(part["images"]) / args.batch_size).backward()
        optimizer.step()

    seconds = timed(step, warmup=args.warmup, iters=args.iters)
    result = {"samples_per_s": args.batch_size / seconds, "peak_rss_gb": peak_rss_gb()}
    if args.profile:
        result["matmul_seconds_per_step"] = matmul_seconds(step, args.iters)
    if args.count_flops:
        model.zero_grad(set_to_none=True)

        def loss() -> torch.Tensor:
            return released_loss(model, batches[0]) if released else model.forward_loss(batches[0])["total"]

        flops = count_flops(lambda: loss().backward())
        result["flops_per_sample"] = flops / args.batch_size
    return result


def retrieval_worker(args: argparse.Namespace) -> dict:
    released = args.variant == "released"
    model = build(args).eval()
    if args.variant == "int8":
        warnings.filterwarnings("ignore", message=".*quantize.*deprecated")
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    g = torch.Generator().manual_seed(1)
    pairs = 1 + args.negatives
    fixed = 128 if released else (args.text_length or None)
    texts = make_batch(pairs, 32, lengths(), seed=3, fixed_length=fixed)
    images = torch.rand(pairs, 3, args.image_size, args.image_size, generator=g)
    itr = (images[:1].expand(pairs, -1, -1, -1), texts["input_ids"], texts["attention_mask"])
    tir = (images, texts["input_ids"][:1].expand(pairs, -1), texts["attention_mask"][:1].expand(pairs, -1))
    limit = args.pairs or pairs  # bf16 without native support: time one chunk only
    state = {"i": 0}

    def query() -> None:
        batch = (itr, tir)[state["i"] % 2]
        state["i"] += 1
        with torch.inference_mode(), autocast(args.precision):
            if released:  # the released evaluator runs the whole model on the 101 pairs
                out = model.forward_encoder(*batch[:2])
                model.mlm_logits(out.text[-1])
                model.forward_decoder(out.visual)
                model.itm_logits(out).softmax(-1)
                return
            for start in range(0, limit, args.chunk):
                end = min(start + args.chunk, limit)
                model.match_score(*(t[start:end] for t in batch))

    seconds = timed(query, warmup=args.warmup, iters=args.queries)
    result = {"pairs_per_s": (pairs if released else limit) / seconds}
    if args.count_flops:  # per pair, so a chunk of each direction is enough
        flops = sum(
            count_flops(lambda b=b: model.match_score(*(t[: args.chunk] for t in b))) for b in (itr, tir)
        )
        result["flops_per_pair"] = flops / (2 * args.chunk)
    return result


class SyntheticPool:
    """A catalogue of ``n`` products for the protocol rows: random pixels and H&M-length texts,
    each made from its row, one sub-category (negatives drawn from the whole pool)."""

    def __init__(self, n: int, image_size: int) -> None:
        self.n, self.image_size, self.text_lengths = n, image_size, lengths()
        self.product_ids = [f"p{i}" for i in range(n)]
        self.texts = [f"product {i}" for i in range(n)]
        self.subcategories = self.categories = ["all"] * n

    def __len__(self) -> int:
        return self.n

    def token_ids(self, row: int) -> list[int]:
        g = torch.Generator().manual_seed(row)
        n = self.text_lengths[row % len(self.text_lengths)]
        return [101, *torch.randint(1000, 30522, (n - 2,), generator=g).tolist(), 102]

    def images(self, rows: Sequence[int]) -> torch.Tensor:
        size = (3, self.image_size, self.image_size)
        return torch.stack([torch.rand(size, generator=torch.Generator().manual_seed(r)) for r in rows])

    def text_batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.token_ids(r) for r in rows]
        ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = torch.tensor(seq)
        return ids, (ids != 0).long()

    def batch(self, image_rows: Sequence[int], text_rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
        return (self.images(image_rows), *self.text_batch(text_rows))


def protocol_worker(args: argparse.Namespace) -> dict:
    """The 1 + 100 protocol as ``mvlt evaluate`` runs it with our default model and its headline
    scorer: ITC embeddings of every product in the lists (each once), then ITM on each list's ITC
    top 16 (each item's unimodal stages once, the joint stage per pair). ``--queries`` queries
    over a pool of ``--pool`` products; both directions; pair slots ranked per second."""
    torch.manual_seed(0)
    model = mvlt.create_model(args.model, image_size=args.image_size).eval()
    pool = SyntheticPool(args.pool, args.image_size)

    def context() -> torch.autocast:
        return autocast(args.precision)

    with torch.no_grad():
        itc_scale = 1.0 / float(model.itc_head.clamped_temperature())
    whole = args.variant == "whole"  # ITM through whole encoder passes, 64 pairs a batch

    def evaluate(queries: int) -> object:
        return run_retrieval(
            pool, pool, model_scorer(model, autocast=context),
            RetrievalProtocol(queries=queries, negatives=args.negatives, topup="any"), scorers=("itc+itm",),
            embedder=model_embedder(model, pool, 64, context), rerank_top=16,
            pair_scorer=None if whole else staged_pair_scorer(model, pool, context, 64), itc_scale=itc_scale,
        )  # fmt: skip

    evaluate(1)  # warm-up: kernel selection, allocator
    start = time.perf_counter()
    out = evaluate(args.queries)
    seconds = time.perf_counter() - start
    return {"pairs_per_s": out.pair_slots / seconds, "seconds": seconds, "slots": out.pair_slots}


def run_worker(args: argparse.Namespace, kind: str, **changes: object) -> dict:
    """One measurement in a fresh process (its own peak RSS, no allocator state carried over)."""
    options = {
        "model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
        "micro_batch": args.batch_size, "threads": args.threads, "negatives": args.negatives,
        "text_length": args.text_length, "chunk": 8, "pairs": 0, "precision": "fp32",
        "variant": "mvlt", "iters": args.iters, "queries": args.queries, "warmup": getattr(args, "warmup", 2),
        "count_flops": 0, "pool": 0, "profile": 0,
    }  # fmt: skip
    options.update(changes)
    cmd = [sys.executable, __file__, "--worker", kind]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ)
    if getattr(args, "malloc_tuning", True):
        env.update(MALLOC_TUNING)
    if getattr(args, "lengths_file", None):
        env[LENGTHS_ENV] = args.lengths_file
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


WORKERS = {"train": train_worker, "retrieval": retrieval_worker, "protocol": protocol_worker}


def worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=list(WORKERS))
    for name in ("image-size", "batch-size", "micro-batch", "threads", "negatives", "text-length", "chunk"):
        p.add_argument(f"--{name}", type=int)
    for name in ("pairs", "iters", "queries", "warmup", "count-flops", "pool", "profile"):
        p.add_argument(f"--{name}", type=int)
    for name in ("model", "precision", "variant"):
        p.add_argument(f"--{name}")
    return p


def main() -> None:
    if "--worker" in sys.argv:
        args = worker_parser().parse_args()
        torch.set_num_threads(args.threads)
        print(json.dumps(WORKERS[args.worker](args)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a few minutes)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--model", default="mvlt_tiny")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--negatives", type=int, default=100)
    parser.add_argument("--text-length", type=int, default=0, help="fixed text length (0: H&M lengths)")
    parser.add_argument("--no-malloc-tuning", dest="malloc_tuning", action="store_false")
    parser.add_argument("--skip-bf16", action="store_true", help="skip bf16 (minutes without native bf16)")
    parser.add_argument("--skip-released", action="store_true", help="skip the released-equivalent rows")
    parser.add_argument("--skip-protocol", action="store_true", help="skip the whole-protocol retrieval rows")
    args = parser.parse_args()
    args.iters, args.queries, args.warmup = (2, 1, 1) if args.quick else (8, 4, 2)
    torch.set_num_threads(args.threads)

    info = machine()
    text_lengths, source = hm_text_lengths()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(text_lengths, f)
    args.lengths_file = f.name
    seconds = 1.5 if args.quick else 4.0
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peak = {name: matmul_peak_gflops(dtype, seconds) for name, dtype in dtypes.items()}
    native = cpu_has_native_bf16() is not None or torch.cuda.is_available()
    print(f"{info['cpu']} ({info['cpu_capability']}, native bf16: {native}), torch {info['torch']}, "
          f"{args.threads} threads, malloc tuning {'on' if args.malloc_tuning else 'off'}")  # fmt: skip
    print(f"matmul peak: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")
    print(f"text lengths: {source}, mean {sum(text_lengths) / len(text_lengths):.1f} tokens\n", flush=True)

    r: dict[str, float] = {}
    slow = {"iters": 1, "warmup": 1, "queries": 1, "pairs": 8} if not native else {}
    plan = [
        ("train fp32, batch 8", "train", {"count_flops": 1, "profile": 1}, "train_samples_per_s_fp32"),
        ("train fp32, 2 x 4", "train", {"micro_batch": 4}, "train_samples_per_s_fp32_accum2"),
        ("retrieval fp32", "retrieval", {"count_flops": 1}, "retrieval_pairs_per_s_fp32"),
        ("retrieval fp32 + int8 linears", "retrieval", {"variant": "int8"}, "retrieval_pairs_per_s_int8"),
    ]
    if args.quick and not native and not args.skip_bf16:
        print("  (--quick on a CPU without native bf16: bf16 rows skipped, they take minutes)")
        args.skip_bf16 = True
    if not args.skip_bf16:
        plan += [
            (
                "train bf16, batch 8",
                "train",
                {"precision": "bf16", "profile": 1, **slow},
                "train_samples_per_s_bf16",
            ),
            ("retrieval bf16", "retrieval", {"precision": "bf16", **slow}, "retrieval_pairs_per_s_bf16"),
        ]
    if not args.skip_released:
        plan += [
            (
                "released-equiv. train fp32",
                "train",
                {"variant": "released", "count_flops": 1, "profile": 1},
                "released_train_samples_per_s",
            ),
            (
                "released-equiv. retrieval",
                "retrieval",
                {"variant": "released"},
                "released_retrieval_pairs_per_s",
            ),
        ]
        if native and not args.skip_bf16:
            released_bf16 = {"variant": "released", "precision": "bf16"}
            plan += [
                (
                    "released-equiv. train bf16",
                    "train",
                    {**released_bf16, "profile": 1},
                    "released_train_samples_per_s_bf16",
                ),
                (
                    "released-equiv. retrieval bf16",
                    "retrieval",
                    released_bf16,
                    "released_retrieval_pairs_per_s_bf16",
                ),
            ]
    if not args.skip_protocol:
        fastest = "bf16" if native else "fp32"
        for name, queries, pool in PROTOCOL_POOLS["quick" if args.quick else "full"]:
            label = f"protocol {name} ({queries} q / {pool} products), {fastest}"
            variant = "whole" if name.endswith("whole") else "mvlt"
            changes = {"queries": queries, "pool": pool, "precision": fastest, "variant": variant}
            plan.append((label, "protocol", changes, f"protocol_pairs_per_s_{name.replace(' ', '_')}"))
    for label, kind, changes, key in plan:
        out = run_worker(args, kind, **changes)
        r[key] = out["samples_per_s" if kind == "train" else "pairs_per_s"]
        if "peak_rss_gb" in out:
            r[key.replace("samples_per_s", "peak_rss_gb")] = out["peak_rss_gb"]
        for flops in ("flops_per_sample", "flops_per_pair"):
            if flops in out:
                r[f"{'released_' if changes.get('variant') == 'released' else ''}{kind}_{flops}"] = out[flops]
        if "matmul_seconds_per_step" in out:
            r[key.replace("samples_per_s", "matmul_share")] = (
                out["matmul_seconds_per_step"] * r[key] / args.batch_size
            )
            r[key.replace("samples_per_s", "matmul_bound_samples_per_s")] = (
                args.batch_size / out["matmul_seconds_per_step"]
            )
        rss = f", peak RSS {out['peak_rss_gb']:.2f} GB" if "peak_rss_gb" in out else ""
        print(f"  {label:32s} {r[key]:8.2f} {'samples' if kind == 'train' else 'pairs'}/s{rss}", flush=True)
    os.unlink(args.lengths_file)

    train_rate = max(r["train_samples_per_s_fp32"], r["train_samples_per_s_fp32_accum2"])
    rates = {"train": {"fp32": train_rate}, "retrieval": {"fp32": r["retrieval_pairs_per_s_fp32"]}}
    if not args.skip_bf16:
        rates["train"]["bf16"] = r["train_samples_per_s_bf16"]
        rates["retrieval"]["bf16"] = r["retrieval_pairs_per_s_bf16"]
    work = {"train": r["train_flops_per_sample"], "retrieval": r["retrieval_flops_per_pair"]}
    for task, by_precision in rates.items():
        for precision, rate in by_precision.items():
            r[f"mfu_{task}_{precision}"] = work[task] * rate / (peak[precision] * 1e9)
            r[f"{task}_fraction_of_fp32_peak_{precision}"] = work[task] * rate / (peak["fp32"] * 1e9)
    r["train_peak_rss_gb"] = r["train_peak_rss_gb_fp32"]
    r["bf16_peak_gflops"], r["fp32_peak_gflops"] = peak["bf16"], peak["fp32"]
    if "released_train_flops_per_sample" in r:
        released_work = r["released_train_flops_per_sample"]
        released_rate = r.get("released_train_samples_per_s_bf16", r["released_train_samples_per_s"])
        r["released_train_fraction_of_bf16_peak"] = released_work * released_rate / (peak["bf16"] * 1e9)
        print(f"\nreleased-equivalent FLOPs: train {released_work / 1e9:.2f} GFLOP/sample, at its best "
              f"{r['released_train_fraction_of_bf16_peak']:.1%} of the bf16 peak", end="")  # fmt: skip
    print(f"\nmodel FLOPs: train {work['train'] / 1e9:.2f} GFLOP/sample, ", end="")
    print(f"retrieval {work['retrieval'] / 1e9:.2f} GFLOP/pair")
    for task, by_precision in rates.items():
        for precision in by_precision:
            print(f"  {task} {precision}: {r[f'mfu_{task}_{precision}']:.1%} of the {precision} peak, "
                  f"{r[f'{task}_fraction_of_fp32_peak_{precision}']:.1%} of the fp32 peak")  # fmt: skip
    print_targets(r)
    keys = ("model", "image_size", "batch_size", "threads", "negatives", "iters", "queries", "text_length")
    config = {k: getattr(args, k) for k in keys}
    config |= {"malloc_tuning": args.malloc_tuning, "native_bf16": native}
    write_json(args.json, {"machine": info, "config": config, "text_lengths": source, **r})


def print_targets(r: dict[str, float]) -> None:
    """Issue 14's comparisons, each in this one run: bf16 against fp32 training, and our best
    (fp32 or bf16; int8 is not offered) against the released-equivalent's best."""
    retrieval = ("retrieval_pairs_per_s_fp32", "retrieval_pairs_per_s_bf16", "protocol_pairs_per_s_one_list")
    ours = {
        "train": max(v for k, v in r.items() if k.startswith("train_samples_per_s")),
        "retrieval": max(r.get(k, 0.0) for k in retrieval),
    }
    print()
    if "train_samples_per_s_bf16" in r:
        r["train_bf16_over_fp32"] = r["train_samples_per_s_bf16"] / r["train_samples_per_s_fp32"]
        print(f"training bf16 / fp32 (batch 8): {r['train_bf16_over_fp32']:.2f}x")
    for task, unit in (("train", "samples_per_s"), ("retrieval", "pairs_per_s")):
        released = [v for k, v in r.items() if k.startswith(f"released_{task}_{unit}")]
        if released:
            r[f"{task}_best_over_released_best"] = ours[task] / max(released)
            print(f"{task}: our best {ours[task]:.2f} / released-equivalent best {max(released):.2f} = "
                  f"{r[f'{task}_best_over_released_best']:.2f}x")  # fmt: skip
    bounds = {k: v for k, v in r.items() if k.startswith("train_matmul_bound_samples_per_s")}
    released_train = [v for k, v in r.items() if k.startswith("released_train_samples_per_s")]
    if bounds and released_train:  # what the training target could reach at most, in this run
        best = max(ours["train"], max(bounds.values()))
        ceiling = r["train_matmul_bound_over_released_best"] = best / max(released_train)
        shares = ", ".join(
            f"{k.removeprefix('train_matmul_share_')} {v:.0%}"
            for k, v in r.items()
            if k.startswith("train_matmul_share")
        )
        print(f"  ceiling: our step's matmul + conv kernels alone (their share of it: {shares}) allow "
              f"at most {best:.2f} samples/s = {ceiling:.2f}x")  # fmt: skip
    released = [v for k, v in r.items() if k.startswith("released_retrieval_pairs_per_s")]
    for key in [k for k in r if k.startswith("protocol_pairs_per_s_")]:
        if released:  # one list is in "our best" above; the pooled rows depend on the pool, so apart
            r[key.replace("pairs_per_s", "over_released_best")] = r[key] / max(released)
            name = key.removeprefix("protocol_pairs_per_s_").replace("_", " ")
            print(f"  protocol, {name}: / released-equivalent best {r[key] / max(released):.2f}x")


if __name__ == "__main__":
    main()
