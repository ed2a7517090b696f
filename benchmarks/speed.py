"""Training and retrieval throughput of the paper configuration, against the machine's peak.

    python benchmarks/speed.py [--quick] [--json FILE]

Measures (``mvlt_tiny``, 256 px, H&M-length texts padded to the longest in the batch, 2 threads):
1. a training step (forward + backward + AdamW, batch 8) in fp32 and bf16 autocast, with the
   process's peak RSS — each precision in a fresh subprocess so RSS is its own;
2. retrieval scoring: 1 + 100-pair queries (ITR: one image, 101 texts; TIR: one text, 101 images)
   through ``match_probability``, fp32 and bf16;
3. model FLOPs per sample / pair (counted with ``torch.utils.flop_counter``) and the achieved
   fraction of the machine's measured matmul peak (bf16 and fp32, measured in the same run).
A "released-equivalent" row runs the same model with the released code's extra work (text always
padded to 128, no padding mask, MLM logits at all 128 positions, the aggregation decoder, and for
retrieval the MLM head and decoder run for nothing), so speed-ups are measured on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
    peak_rss_gb,
    timed,
    write_json,
)

PRECISIONS = ("fp32", "bf16")


def autocast(precision: str) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def build(args: argparse.Namespace, released: bool) -> mvlt.MVLT:
    torch.manual_seed(0)
    if released:
        return mvlt.create_model(args.model, compat="official", image_size=args.image_size)
    return mvlt.create_model(args.model, image_size=args.image_size)


def released_losses(model: mvlt.MVLT, batch: dict) -> torch.Tensor:
    """The released step's work: every head on every position, 128-token unmasked text."""
    out = model.forward_encoder(batch["masked_images"], batch["input_ids"])
    logits = model.mlm_logits(out.text[-1])
    mlm = F.cross_entropy(logits.flatten(0, 1).float(), batch["mlm_labels"].flatten(), ignore_index=-100)
    itm = F.cross_entropy(model.itm_logits(out).float(), batch["itm_labels"])
    mir = F.smooth_l1_loss(model.forward_decoder(out.visual).float(), batch["images"])
    return 10 * mir + itm + mlm


def train_worker(args: argparse.Namespace, precision: str, released: bool) -> dict:
    lengths, _ = hm_text_lengths()
    model = build(args, released).train()
    decay = model.no_weight_decay()
    groups = [
        {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-4, foreach=True)
    fixed = 128 if released else (args.text_length or None)
    batches = [
        make_batch(args.batch_size, args.image_size, lengths, seed=s, fixed_length=fixed) for s in range(4)
    ]
    state = {"i": 0}

    def step() -> None:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision):
            loss = released_losses(model, batch) if released else model.forward_loss(batch)["total"]
        loss.backward()
        optimizer.step()

    seconds = timed(step, warmup=2, iters=args.iters)
    result = {"samples_per_s": args.batch_size / seconds, "peak_rss_gb": peak_rss_gb()}
    if not released and precision == "fp32":
        model.zero_grad(set_to_none=True)
        flops = count_flops(lambda: model.forward_loss(batches[0])["total"].backward())
        result["flops_per_sample"] = flops / args.batch_size
    return result


def retrieval_worker(args: argparse.Namespace, precision: str, released: bool) -> dict:
    lengths, _ = hm_text_lengths()
    model = build(args, released).eval()
    g = torch.Generator().manual_seed(1)
    pairs = 1 + args.negatives
    fixed = 128 if released else (args.text_length or None)
    texts = make_batch(pairs, 32, lengths, seed=3, fixed_length=fixed)
    images = torch.rand(pairs, 3, args.image_size, args.image_size, generator=g)
    itr = (images[:1].expand(pairs, -1, -1, -1), texts["input_ids"], texts["attention_mask"])
    tir = (images, texts["input_ids"][:1].expand(pairs, -1), texts["attention_mask"][:1].expand(pairs, -1))
    state = {"i": 0}

    def query() -> None:
        batch = (itr, tir)[state["i"] % 2]
        state["i"] += 1
        with torch.inference_mode(), autocast(precision):
            if released:  # the released evaluator runs the whole model and keeps only ITM
                out = model.forward_encoder(*batch[:2])
                model.mlm_logits(out.text[-1])
                model.forward_decoder(out.visual)
                model.itm_logits(out).softmax(-1)
            else:
                model.match_probability(*batch)

    seconds = timed(query, warmup=2, iters=args.queries)
    result = {"pairs_per_s": pairs / seconds}
    if not released and precision == "fp32":
        flops = sum(count_flops(lambda b=b: model.match_probability(*b)) for b in (itr, tir))
        result["flops_per_pair"] = flops / (2 * pairs)
    return result


def run_worker(args: argparse.Namespace, kind: str, precision: str, released: bool) -> dict:
    """Each measurement in a fresh process: its own peak RSS, no allocator state carried over."""
    cmd = [sys.executable, __file__, "--worker", kind, "--precision", precision]
    cmd += ["--model", args.model, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]
    cmd += ["--iters", str(args.iters), "--queries", str(args.queries), "--threads", str(args.threads)]
    cmd += ["--negatives", str(args.negatives), "--text-length", str(args.text_length)]
    cmd += ["--released"] if released else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (about a minute or two)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--model", default="mvlt_tiny")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--negatives", type=int, default=100)
    parser.add_argument("--text-length", type=int, default=0, help="fixed text length (0 = H&M lengths)")
    parser.add_argument("--iters", type=int, default=None, help="timed training steps")
    parser.add_argument("--queries", type=int, default=None, help="timed retrieval queries")
    parser.add_argument("--skip-bf16", action="store_true", help="skip bf16 (very slow without native bf16)")
    parser.add_argument("--skip-released", action="store_true", help="skip the released-equivalent rows")
    parser.add_argument("--worker", choices=["train", "retrieval"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--released", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.iters = args.iters or (3 if args.quick else 10)
    args.queries = args.queries or (2 if args.quick else 6)
    torch.set_num_threads(args.threads)
    if args.worker:
        fn = train_worker if args.worker == "train" else retrieval_worker
        print(json.dumps(fn(args, args.precision, args.released)))
        return

    info = machine()
    lengths, source = hm_text_lengths()
    seconds = 1.0 if args.quick else 3.0
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peak = {name: matmul_peak_gflops(dtype, seconds) for name, dtype in dtypes.items()}
    print(f"{info['cpu']} ({info['cpu_capability']}), torch {info['torch']}, {args.threads} threads")
    print(f"matmul peak: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")
    print(f"text lengths: {source}, mean {sum(lengths) / len(lengths):.1f} tokens")
    precisions = ("fp32",) if args.skip_bf16 else PRECISIONS
    rows, results = [], {}
    for released in (False,) if args.skip_released else (False, True):
        tag = "released_equiv_" if released else ""
        for precision in precisions:
            train = run_worker(args, "train", precision, released)
            retrieval = run_worker(args, "retrieval", precision, released)
            results[f"{tag}train_samples_per_s_{precision}"] = train["samples_per_s"]
            results[f"{tag}train_peak_rss_gb_{precision}"] = train["peak_rss_gb"]
            results[f"{tag}retrieval_pairs_per_s_{precision}"] = retrieval["pairs_per_s"]
            if "flops_per_sample" in train:
                results["train_flops_per_sample"] = train["flops_per_sample"]
                results["retrieval_flops_per_pair"] = retrieval["flops_per_pair"]
            name = ("released-equivalent" if released else "mvlt") + f" {precision}"
            rows.append((name, train, retrieval))
    work = {"train": results["train_flops_per_sample"], "retrieval": results["retrieval_flops_per_pair"]}
    rate = {"train": "train_samples_per_s", "retrieval": "retrieval_pairs_per_s"}
    for precision in precisions:
        for task in ("train", "retrieval"):
            achieved = work[task] * results[f"{rate[task]}_{precision}"]
            results[f"mfu_{task}_{precision}"] = achieved / (peak[precision] * 1e9)
            results[f"{task}_fraction_of_fp32_peak_{precision}"] = achieved / (peak["fp32"] * 1e9)
    results["train_peak_rss_gb"] = results["train_peak_rss_gb_fp32"]
    results["bf16_peak_gflops"], results["fp32_peak_gflops"] = peak["bf16"], peak["fp32"]

    print(f"\nmodel FLOPs: train {work['train'] / 1e9:.2f} GFLOP/sample, ", end="")
    print(f"retrieval {work['retrieval'] / 1e9:.2f} GFLOP/pair")
    print(f"{'run':28s} {'train samples/s':>16s} {'peak RSS GB':>12s} {'retrieval pairs/s':>18s}")
    for name, train, retrieval in rows:
        print(
            f"{name:28s} {train['samples_per_s']:16.2f} {train['peak_rss_gb']:12.2f} "
            f"{retrieval['pairs_per_s']:18.2f}"
        )
    for precision in precisions:
        print(
            f"{precision}: train {results[f'mfu_train_{precision}']:.1%} and retrieval "
            f"{results[f'mfu_retrieval_{precision}']:.1%} of the {precision} matmul peak"
        )
    keys = ("model", "image_size", "batch_size", "threads", "negatives", "iters", "queries", "text_length")
    config = {k: getattr(args, k) for k in keys}
    write_json(args.json, {"machine": info, "config": config, "text_lengths": source, **results})


if __name__ == "__main__":
    main()
