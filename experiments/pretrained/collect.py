"""Collect the pretrained-knowledge runs kept in ``docs/results/pretrained/`` into the section
``pretrained_knowledge`` of ``docs/results.json`` and print the RESULTS.md table.

    python experiments/pretrained/collect.py docs/results/pretrained --json docs/results.json

One entry per run, on the H&M test split's 1,000 queries of 1 + 100 (the same lists for every
run): ``tir_r1/5/10`` and ``itr_r1/5/10`` as fractions with their binomial standard errors
(``*_se``), M-CR / S-CR accuracy where the run has recognition heads, ``minutes`` with every stage
on the clock, the device, and the command that made it. Runs of ``benchmarks/time_to_accuracy.py``
(pre-training only, so no S-CR) are read from their record and last evaluation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

SUFFIX = "_1p100_subcat"
RETRIEVAL = [f"{d}_r{k}" for d in ("tir", "itr") for k in (1, 5, 10)]
GPU = "one NVIDIA H200 (lent), 6 runs sharing it"
CPU = "2-core AMD EPYC (AVX-512 BF16), torch 2.13 CPU"
SWEEP = (
    "python experiments/pretrained/gpu_sweep.py --data hm96/metadata.csv --targets targets.safetensors "
    "--out /tmp/sweep --pretrain-steps 2000 --finetune-steps 650 --max-minutes 5.5 1.6 --variants {v}"
)
GPU_VARIANTS = {  # kept folder -> (entry name, teacher sources)
    "scratch": ("mvlt_scratch_gpu", "none"),
    "text": ("mvlt_text_gpu", "text-init,text"),
    "image": ("mvlt_image_gpu", "image"),
    "cross": ("mvlt_cross_gpu", "cross"),
    "all": ("mvlt_all_gpu", "all"),
    "all_no_mir_mlm": ("mvlt_all_no_mir_mlm_gpu", "all, pre-training without MIR and MLM"),
}
HM = "../shared/data/hm_fashion_11k/metadata.csv"
BASELINE = "python experiments/pretrained/baseline.py --data " + HM + " --dim {dim} --out DIR"
DEMO = "mvlt demo --data " + HM + " --minutes {minutes} --queries 1000 --threads 2{teachers} --out DIR"
CPU_RUNS = {  # kept folder -> (entry name, teacher sources, command)
    "baseline-256": ("baseline_frozen_dual_encoder_256d", "frozen teachers", BASELINE.format(dim=256)),
    "baseline-128": ("baseline_frozen_dual_encoder_128d", "frozen teachers", BASELINE.format(dim=128)),
    "../recipe/hm-cpu": ("mvlt_scratch_cpu", "none", DEMO.format(minutes=33, teachers="")),
    "all-cpu": ("mvlt_all_cpu", "all", DEMO.format(minutes=20, teachers=" --teachers all")),
}
TTA = (
    "python benchmarks/time_to_accuracy.py --minutes {minutes} --eval-every {every} --queries 1000 "
    "--target 0.99 --teachers text-init,text,image --objectives itc,itm,kd_text,kd_image "
    "{flags}--out DIR --json RUN.json"
)
GROUPED_KD8 = "--batch-groups 16 --loss-weights kd_image=8,kd_text=8 "
MICRO_FINETUNED = GROUPED_KD8 + "--model mvlt_micro --finetune-minutes 8 "
MICRO_FINETUNED_11 = GROUPED_KD8 + "--model mvlt_micro --finetune-minutes 11 "
MICRO_FINETUNED_10 = GROUPED_KD8 + "--model mvlt_micro --finetune-minutes 10 "
BENCHMARK_RUNS = {  # kept folder (time_to_accuracy.json + metrics.json of its last evaluation) -> entry
    "grouped-kd8-cpu": (
        "mvlt_text_image_grouped_kd8_cpu",
        "text-init,text,image; kd x8; batches of 16 same-sub-category items",
        TTA.format(minutes=45, every=15, flags=GROUPED_KD8),
    ),
    "micro-finetuned-cpu": (
        "mvlt_micro_text_image_grouped_kd8_finetuned_cpu",
        "text-init,text,image; kd x8; batches of 16; mvlt_micro; recognition fine-tuned 8 min",
        TTA.format(minutes=40, every=20, flags=MICRO_FINETUNED),
    ),
    "micro-fitheads-cpu": (
        "mvlt_micro_text_image_grouped_kd8_finetuned_fitheads_cpu",
        "text-init,text,image; kd x8; batches of 16; mvlt_micro; recognition fine-tuned 8 min, heads fitted",
        TTA.format(minutes=40, every=20, flags=MICRO_FINETUNED + "--fit-heads "),
    ),
    "micro-fitheads-38-11-cpu": (
        "mvlt_micro_text_image_grouped_kd8_finetuned11_fitheads_cpu",
        "text-init,text,image; kd x8; batches of 16; mvlt_micro; pre-training 38 min, recognition "
        "fine-tuned 11 min, heads fitted",
        TTA.format(minutes=38, every=20, flags=MICRO_FINETUNED_11 + "--fit-heads "),
    ),
    "micro-fitheads-teacher-cpu": (
        "mvlt_micro_text_image_grouped_kd8_finetuned10_fitheads_teacher_cpu",
        "text-init,text,image; kd x8; batches of 16; mvlt_micro; pre-training 36 min, recognition "
        "fine-tuned 10 min, heads fitted to labels 0.4 + teachers' probabilities 0.6",
        TTA.format(minutes=36, every=40, flags=MICRO_FINETUNED_10 + "--fit-heads --fit-heads-teacher 0.6 "),
    ),
    "micro-heads-itc-cpu": (
        "mvlt_micro_text_image_grouped_kd8_finetuned10_heads_itc_cpu",
        "text-init,text,image; kd x8; batches of 16; mvlt_micro; pre-training 36 min, recognition "
        "fine-tuned 10 min with heads that also read the ITC embeddings, fitted to labels 0.4 + "
        "teachers' probabilities 0.6",
        TTA.format(
            minutes=36,
            every=40,
            flags=MICRO_FINETUNED_10 + "--fit-heads --fit-heads-teacher 0.6 --heads-read-itc ",
        ),
    ),
}
SCRATCH_CPU_MINUTES = 52.8
"""The from-scratch hour of docs/RESULTS.md (its wall time, measured then with /usr/bin/time)."""


def figures(metrics: dict) -> dict:
    """The headline scorer's R@k and standard errors, and recognition where it ran."""
    out = {}
    for key in RETRIEVAL:
        out[key] = metrics[key + SUFFIX]
        out[key + "_se"] = metrics[f"{key}{SUFFIX}_se"]
    for key in ("mcr_acc", "scr_acc"):
        if key in metrics:
            out[key] = metrics[key]
    return out


def trained(log: Path) -> dict:
    """Steps and seconds from a run's final ``train.log`` line."""
    found = re.findall(
        r"at step (\d+)/(\d+) steps in ([\d.]+) s|done: (\d+)/(\d+) steps in ([\d.]+) s", log.read_text()
    )
    last = [x for x in found[-1] if x]
    return {"steps": int(last[0]), "planned_steps": int(last[1]), "seconds": float(last[2])}


def gpu_entry(folder: Path, variant: str) -> dict:
    name, sources = GPU_VARIANTS[variant]
    metrics = json.loads((folder / "metrics.json").read_text())
    pre, fine = trained(folder / "pretrain_train.log"), trained(folder / "finetune_train.log")
    return {
        "name": name,
        "teachers": sources,
        "device": GPU,
        "scorer": metrics["protocol"]["retrieval"]["scorers"][0],
        "minutes": round((pre["seconds"] + fine["seconds"]) / 60, 2),
        "minutes_cover": "training only (GPU)",
        "pretrain_steps": pre["steps"],
        "finetune_steps": fine["steps"],
        "command": SWEEP.format(v=variant),
        **figures(metrics),
    }


def cpu_entry(folder: Path, key: str) -> dict:
    name, sources, command = CPU_RUNS[key]
    metrics = json.loads((folder / "metrics.json").read_text())
    entry = {"name": name, "teachers": sources, "device": CPU, "command": command}
    if "baseline" in key:
        entry.update(
            scorer="itc", minutes=round(metrics["seconds"]["total"] / 60, 2), **figures(metrics["metrics"])
        )
        entry["minutes_cover"] = "teacher features (train + test), fit, scoring"
        return entry
    timing = json.loads((folder / "timing.json").read_text()) if (folder / "timing.json").is_file() else {}
    plan = json.loads((folder / "demo.json").read_text())
    entry.update(
        scorer=metrics["protocol"]["retrieval"]["scorers"][0],
        pretrain_steps=plan["pretrain_steps"],
        finetune_steps=plan["finetune_steps"],
        minutes=round(timing.get("wall_s", SCRATCH_CPU_MINUTES * 60) / 60, 2),
        minutes_cover="the whole command: data, image cache, teachers, training, evaluation",
        **figures(metrics),
    )
    return entry


def benchmark_entry(folder: Path, key: str) -> dict:
    """A ``benchmarks/time_to_accuracy.py`` run. Its kept ``metrics.json`` is its last evaluation: the
    fine-tuned model's (retrieval and recognition) when it ran ``--finetune-minutes``, else the
    pre-trained model's (retrieval only)."""
    name, sources, command = BENCHMARK_RUNS[key]
    metrics = json.loads((folder / "metrics.json").read_text())
    record = json.loads((folder / "time_to_accuracy.json").read_text())
    return {
        "name": name, "teachers": sources, "device": CPU, "command": command,
        "scorer": metrics["protocol"]["retrieval"]["scorers"][0],
        "pretrain_steps": record["points"][-1]["step"],
        "finetune_steps": (record.get("finetuned") or {}).get("step", 0),
        "minutes": record["total_minutes"],
        "minutes_cover": "the whole benchmark: image cache, teachers, pair fit, training, evaluations",
        **figures(metrics),
    }  # fmt: skip


def collect(root: Path) -> list[dict]:
    entries = []
    for key in CPU_RUNS:
        if (root / key / "metrics.json").is_file():
            entries.append(cpu_entry(root / key, key))
    for key in BENCHMARK_RUNS:
        if (root / key / "metrics.json").is_file():
            entries.append(benchmark_entry(root / key, key))
    for variant in GPU_VARIANTS:
        if (root / "gpu-ablation" / variant / "metrics.json").is_file():
            entries.append(gpu_entry(root / "gpu-ablation" / variant, variant))
    return entries


def table(entries: list[dict]) -> str:
    head = [
        "run",
        "teachers",
        "device",
        "steps",
        "minutes",
        "TIR R@1",
        "R@5",
        "R@10",
        "ITR R@1",
        "R@5",
        "R@10",
    ]
    rows = ["| " + " | ".join([*head, "S-CR"]) + " |", "|---" * (len(head) + 1) + "|"]
    for e in entries:
        pct = {k: f"{100 * e[k]:.1f}" for k in RETRIEVAL}
        r5 = {d: f"{pct[d + '_r5']} ± {100 * e[d + '_r5_se']:.1f}" for d in ("tir", "itr")}
        steps = f"{e['pretrain_steps']} + {e['finetune_steps']}" if "pretrain_steps" in e else "–"
        cells = [
            e["name"],
            e["teachers"],
            "GPU" if e["device"] == GPU else "CPU",
            steps,
            f"{e['minutes']:.1f}",
        ]
        cells += [pct["tir_r1"], r5["tir"], pct["tir_r10"], pct["itr_r1"], r5["itr"], pct["itr_r10"]]
        cells.append(f"{100 * e['scr_acc']:.1f} %" if "scr_acc" in e else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--json", type=Path, default=None, help="results.json to write the section into")
    args = p.parse_args(argv)
    entries = collect(args.folder)
    if args.json:
        kept = json.loads(args.json.read_text()) if args.json.is_file() else {}
        kept["pretrained_knowledge"] = entries
        args.json.write_text(json.dumps(kept, indent=2) + "\n")
    print(table(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
