"""Shared pieces of the speed benchmarks: machine peak, realistic text lengths, batches, FLOPs.

Not a test: run the scripts (`speed.py`, `scaling.py`) and read their tables / JSON.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MVLT_SHARED", REPO.parent / "shared"))
HM_MANIFEST = SHARED / "data" / "hm_fashion_11k" / "metadata.csv"
BERT_VOCAB = SHARED / "assets" / "bert-base-uncased-vocab.txt"
IGNORE_INDEX = -100


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d"),
    }


def matmul_peak_gflops(dtype: torch.dtype, seconds: float = 2.0, device: str = "cpu") -> float:
    """Best sustained square-matmul rate over a few sizes: the machine's practical peak."""
    best = 0.0
    for n in (512, 1024, 2048):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        start = time.perf_counter()
        a @ b  # warm-up (oneDNN / MKL kernel selection)
        if time.perf_counter() - start > seconds / 3 and best > 0:
            break  # an emulated dtype (bf16 without native support): larger sizes take minutes
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3 or reps < 2:
            a @ b
            reps += 1
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def hm_text_lengths(max_length: int = 128) -> tuple[list[int], str]:
    """Token lengths of the H&M training descriptions under the BERT vocabulary (realistic L).

    Falls back to a fixed spread around the H&M mean when the shared data is not present.
    """
    if HM_MANIFEST.is_file() and BERT_VOCAB.is_file():
        from mvlt.data import Tokenizer, open_catalogue

        tokenizer = Tokenizer.from_vocab(BERT_VOCAB, max_length=max_length)
        texts = open_catalogue(HM_MANIFEST, split="train").texts
        return [len(ids) for ids in tokenizer.encode_batch(texts)], "H&M train descriptions, BERT vocab"
    return [min(max_length, 24 + (7 * i) % 60) for i in range(1000)], "synthetic spread (H&M data not found)"


def make_batch(
    batch: int,
    size: int,
    lengths: list[int],
    vocab: int = 30522,
    seed: int = 0,
    fixed_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """A pre-training batch with texts drawn from ``lengths``, padded to the longest (dynamic padding)."""
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(lengths), (batch,), generator=g).tolist()
    sample = [fixed_length or lengths[i] for i in picks]
    width = max(sample)
    ids = torch.zeros(batch, width, dtype=torch.long)
    mask = torch.zeros(batch, width, dtype=torch.long)
    mlm = torch.full((batch, width), IGNORE_INDEX)
    for row, n in enumerate(sample):
        ids[row, :n] = torch.randint(1000, vocab, (n,), generator=g)
        ids[row, 0], ids[row, n - 1] = 101, 102
        mask[row, :n] = 1
        chosen = torch.randperm(n - 2, generator=g)[: max(1, round(0.15 * (n - 2)))] + 1
        mlm[row, chosen] = ids[row, chosen]
    images = torch.rand(batch, 3, size, size, generator=g)
    return {
        "images": images,
        "masked_images": images.masked_fill(torch.rand(batch, 1, size, size, generator=g) < 0.5, 1e-6),
        "input_ids": ids,
        "attention_mask": mask,
        "mlm_labels": mlm,
        "itm_labels": torch.randint(0, 2, (batch,), generator=g),
    }


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()``; attention goes through the math kernel so its matmuls are counted too."""
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return counter.get_total_flops()


MATMUL_KERNELS = frozenset(
    {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
     "aten::convolution_backward", "aten::_scaled_dot_product_flash_attention_for_cpu",
     "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}
)  # fmt: skip
"""The matrix-product and convolution kernels (self time: the dispatch layers above them excluded)."""


def matmul_seconds(fn: Callable[[], object], iters: int) -> float:
    """Seconds per call of ``fn`` spent inside :data:`MATMUL_KERNELS` (``torch.profiler`` self
    time): how long ``fn`` would take if every other operation (norms, activations, casts,
    softmax, the optimizer) took no time at all, a hard ceiling on what removing them can give."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            fn()
    events = prof.key_averages()
    return sum(e.self_cpu_time_total for e in events if e.key in MATMUL_KERNELS) / 1e6 / iters


def peak_rss_gb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def timed(
    fn: Callable[[], object], warmup: int, iters: int, sync: Callable[[], None] = lambda: None
) -> float:
    """Seconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")
