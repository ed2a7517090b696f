"""The teacher ablation on one GPU: every variant of ``--teachers`` with the same steps, side by side.

    python experiments/pretrained/gpu_sweep.py --data DIR/metadata.csv --targets targets.safetensors \
        --out runs/sweep --pretrain-steps 2000 --finetune-steps 650 --variants scratch,text,image,cross,all

Each variant pre-trains and fine-tunes ``mvlt_nano`` at 96 px as ``mvlt demo`` does (fine-tuning
keeps ITC and ITM, and the teacher terms), then evaluates on the test split (1,000 queries of
1 + 100), in its own process; the variants share the GPU. The teacher pair's targets of the
training rows and MiniLM's projected word embeddings come precomputed from ``--targets`` (made
on the CPU by ``make_targets``, since the teacher packages do not travel), in place of
``mvlt.train.teachers``' cache; everything else is the ``mvlt`` command line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "scratch": "",
    "text": "text-init,text",
    "image": "image",
    "cross": "cross",
    "all": "all",
    "all_no_mir_mlm": "all",
}
PRETRAIN_EXTRA = {"all_no_mir_mlm": ["--loss-weights", "mir=0,mlm=0"]}
"""Variants that change more than the teachers: the last asks whether MIR and MLM earn their step time."""


def make_targets(data: str, out: Path, dim: int = 128, seed: int = 0) -> None:
    """On the CPU: the teacher pair's targets of the training split and the word-embedding start."""
    import torch
    from safetensors.torch import save_file

    from mvlt.data import open_catalogue
    from mvlt.train.teachers.distill import minilm_word_embeddings, teacher_targets

    train = open_catalogue(data, split="train")
    targets, record = teacher_targets(train, dim, seed)
    tensors = {
        "image": targets.image.contiguous(),
        "text": targets.text.contiguous(),
        "temperature": torch.tensor(targets.temperature),
        "words": minilm_word_embeddings(dim),
    }
    save_file(tensors, str(out), metadata={"record": json.dumps(record)})


def patch_teachers(path: str) -> None:
    """Serve the precomputed targets where the trainer asks ``mvlt.train.teachers`` for them."""
    from safetensors.torch import load_file

    from mvlt.train.teachers import distill

    tensors = load_file(path)
    record = {
        "dim": tensors["image"].shape[1],
        "epochs": 0,
        "temperature": float(tensors["temperature"]),
        "held_out_r1": None,
        "cache": path,
    }

    def targets(catalogue, dim, seed, cache_dir=None, progress=True):
        assert len(catalogue) == len(tensors["image"]) and dim == tensors["image"].shape[1]
        return distill.TeacherTargets(
            tensors["image"], tensors["text"], float(tensors["temperature"])
        ), record

    distill.teacher_targets = targets
    distill.minilm_word_embeddings = lambda width, std=0.02: tensors["words"][:, :width]
    distill.check_text_vocabulary = lambda tokenizer: None


def run_variant(args: argparse.Namespace, name: str) -> None:
    """Pre-train, fine-tune, evaluate one variant in this process (the patched teachers)."""
    from mvlt.cli import main

    def cli(argv: list[str]) -> None:
        rc = main(argv)
        if rc:
            raise SystemExit(f"{name}: mvlt {argv[0]} exited {rc}")

    patch_teachers(str(args.targets))
    out = args.out / name
    teachers = ["--teachers", VARIANTS[name]] if VARIANTS[name] else []
    common = [
        "--data",
        str(args.data),
        "--image-size",
        "96",
        "--batch-size",
        "64",
        "--seed",
        "0",
        "--log-every",
        "25",
        "--workers",
        str(args.workers),
        "--checkpoint-every",
        "1000",
        "--keep-checkpoints",
        "1",
        "--device",
        args.device,
    ]
    started = time.time()
    cli(
        [
            "pretrain",
            "--model",
            "mvlt_nano",
            "--steps",
            str(args.pretrain_steps),
            "--lr",
            "1e-3",
            "--out",
            str(out / "pretrain"),
            "--max-minutes",
            str(args.max_minutes[0]),
            *common,
            *teachers,
            *PRETRAIN_EXTRA.get(name, []),
        ]
    )
    cli(
        [
            "finetune",
            "--init",
            str(out / "pretrain"),
            "--steps",
            str(args.finetune_steps),
            "--lr",
            "5e-4",
            "--loss-weights",
            "itc=1,itm=3",
            "--out",
            str(out / "model"),
            "--max-minutes",
            str(args.max_minutes[1]),
            *common,
            *(["--teachers", VARIANTS[name].replace("text-init,", "")] if VARIANTS[name] else []),
        ]
    )
    trained = time.time()
    cli(
        [
            "evaluate",
            "--checkpoint",
            str(out / "model"),
            "--data",
            str(args.data),
            "--task",
            "all",
            "--queries",
            str(args.queries),
            "--out",
            str(out / "eval"),
            "--device",
            args.device,
        ]
    )
    (out / "timing.json").write_text(
        json.dumps({"train_s": trained - started, "total_s": time.time() - started})
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--targets", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--finetune-steps", type=int, default=650)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--max-minutes", type=float, nargs=2, default=(1e9, 1e9), help="per stage: a deadline guard"
    )
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--one", default=None, help="run this variant here (used by the parent)")
    p.add_argument("--make-targets", action="store_true", help="CPU: write --targets from --data")
    args = p.parse_args()
    if args.make_targets:
        make_targets(str(args.data), args.targets)
        return
    if args.one:
        run_variant(args, args.one)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name in args.variants.split(","):
        log = (args.out / f"{name}.log").open("w")
        cmd = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for name, proc in procs.items():
        print(name, "exit", proc.wait(), flush=True)


if __name__ == "__main__":
    main()
