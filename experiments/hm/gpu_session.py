"""One short GPU session for docs/RESULTS.md: every run of the H&M tables inside a deadline.

    python experiments/hm/gpu_session.py --data DIR/metadata.csv --out runs/hm-gpu \
        --pack results.tar.gz --minutes 8.3 --commit $(git rev-parse HEAD)

Stages, each through the ``mvlt`` CLI with checkpoints (so any run resumes with ``--resume``):

1. calibrate: 30 pre-training steps of the real configuration, then a 5-step fine-tune and a
   10-query evaluation of that checkpoint: the whole pipeline is proven on this device before
   the budget is spent, and the measured samples/s turns the time plan into step counts;
2. main: pre-train with MIR + ITM + MLM, fine-tune the recognition heads, evaluate everything
   (1 + 100 retrieval over 1,000 queries, recognition, MIG);
3. ablations (Table 3(d)): ITM, ITM + MIR, ITM + MLM and all three with one equal step budget,
   run side by side on the device (2 micro-batches per step to share its memory), each scored on
   the main run's candidate lists.

After every stage ``--pack`` (a .tar.gz) is rewritten with the logs, metrics and reports (no
weights), so a session cut short still returns what it finished.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PRETRAIN, FINETUNE = HERE / "pretrain_gpu.yaml", HERE / "finetune_gpu.yaml"
ABLATIONS = {"itm": "itm", "itm_mir": "itm,mir", "itm_mlm": "itm,mlm", "all": "mir,itm,mlm"}
EXCLUDED = ("checkpoints", ".safetensors", "tensorboard")


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out, self.started = args, args.out, time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self.record: dict = {"commit": args.commit, "data": str(args.data), "runs": {}}
        self.launched: dict[str, float] = {}

    def left(self) -> float:
        return 60 * self.args.minutes - (time.monotonic() - self.started)

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def launch(self, name: str, *cli: str) -> subprocess.Popen:
        log = (self.out / f"{name}.log").open("w")
        self.say(f"start {name}: mvlt {' '.join(cli)}")
        self.launched[name] = time.monotonic()
        return subprocess.Popen(
            [sys.executable, "-m", "mvlt.cli", *cli], stdout=log, stderr=subprocess.STDOUT
        )

    def wait(self, name: str, proc: subprocess.Popen, reserve: float = 0.0) -> None:
        """Wait for ``proc``, killing it when only ``reserve`` seconds of the session are left."""
        try:
            code = proc.wait(timeout=max(1.0, self.left() - reserve))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed at the deadline"
        seconds = round(time.monotonic() - self.launched[name], 1)
        self.record["runs"].setdefault(name, {})["wall_s"] = seconds
        self.say(f"end {name}: exit {code} after {seconds} s")
        if code != 0:
            tail = (self.out / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} failed ({code}):\n{tail}")

    def mvlt(self, name: str, *cli: str, reserve: float = 0.0) -> None:
        self.wait(name, self.launch(name, *cli), reserve)

    def pack(self) -> None:
        (self.out / "session.json").write_text(json.dumps(self.record, indent=1))
        tmp = self.args.pack.with_suffix(".tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(
                self.out, arcname=self.out.name, filter=lambda t: None if t.name.endswith(EXCLUDED) else t
            )
        tmp.replace(self.args.pack)


def samples_per_s(run: Path, skip: int = 1) -> float:
    """Mean throughput over the logged windows of a training run, the first (warm-up) skipped."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["samples_per_s"] for r in rows if "samples_per_s" in r][skip:]
    return sum(rates) / len(rates)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the H&M manifest (metadata.csv)")
    p.add_argument("--out", type=Path, required=True, help="folder for every run")
    p.add_argument("--pack", type=Path, required=True, help="the .tar.gz of results to rewrite")
    p.add_argument("--minutes", type=float, default=8.5, help="the whole session's deadline")
    p.add_argument("--main-s", type=float, default=130, help="planned seconds of main pre-training")
    p.add_argument("--finetune-s", type=float, default=25, help="planned seconds of fine-tuning")
    p.add_argument("--ablation-s", type=float, default=20, help="planned seconds per ablation run alone")
    p.add_argument("--queries", type=int, default=1000, help="retrieval queries (the protocol's 1,000)")
    p.add_argument("--commit", default="unknown", help="the repository commit, recorded with the results")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every training run (a CPU dry run: --set device=cpu --set model=mvlt_nano ...)",
    )
    args = p.parse_args(argv)
    if not args.data.is_file():
        p.error(f"--data {args.data}: no such manifest")
    s = Session(args)
    try:
        run_all(s, ["--data", str(args.data)])
    except Exception as error:  # report, pack what finished, and fail
        s.say(f"STOPPED: {error}")
        s.record["stopped"] = str(error)[:2000]
        s.pack()
        return 1
    s.pack()
    s.say("done")
    return 0


def run_all(s: Session, data: list[str]) -> None:
    """The stages of the module docstring. (Paths are split on spaces: keep --out free of them.)"""
    out, args = s.out, s.args
    sets = [x for kv in args.set for x in ("--set", kv)]
    pre = ["pretrain", "--config", str(PRETRAIN), *sets, *data]
    fine = ["finetune", "--config", str(FINETUNE), *sets, *data]
    evaluate = ["evaluate", *data, "--no-progress"]
    batch = int(yaml.safe_load(PRETRAIN.read_text())["batch_size"])
    batch = next((int(kv.split("=", 1)[1]) for kv in args.set if kv.startswith("batch_size=")), batch)

    s.mvlt("calib_pretrain", *pre, *f"--steps 30 --log-every 5 --out {out}/calib".split())
    s.mvlt("calib_finetune", *fine, *f"--init {out}/calib --steps 5 --out {out}/calib_ft".split())
    tiny = "--queries 10 --recognition-items 256 --mig-images 4"
    s.mvlt("calib_eval", *evaluate, *f"--checkpoint {out}/calib_ft --out {out}/calib_eval {tiny}".split())
    rate = samples_per_s(out / "calib")
    plan = {"main": args.main_s, "finetune": args.finetune_s, "ablation": args.ablation_s}
    steps = {k: int(rate * seconds / batch) for k, seconds in plan.items()}
    s.record.update(calibrated_samples_per_s=round(rate, 1), steps=steps)
    s.say(f"calibrated: {rate:.0f} samples/s -> steps {steps}")
    s.pack()

    main = f"--steps {steps['main']} --max-minutes {args.main_s / 40}"  # 1.5x the plan, a safety net
    s.mvlt("main_pretrain", *pre, *f"{main} --out {out}/main".split())
    tune = f"--steps {steps['finetune']} --max-minutes {args.finetune_s / 40}"
    s.mvlt("main_finetune", *fine, *f"--init {out}/main {tune} --out {out}/main_ft".split())
    s.pack()

    # The ablations train while the main run is evaluated, and stop (with a checkpoint) in time
    # for their own evaluation on the main run's candidate lists.
    budget = f"--steps {steps['ablation']} --max-minutes {max(0.5, (s.left() - 90) / 60):.2f}"
    ablations = {
        name: s.launch(f"abl_{name}", *pre, "--objectives", objectives,
                       *f"{budget} --accumulation 2 --workers 3 --threads 1 --out {out}/abl_{name}".split())
        for name, objectives in ABLATIONS.items()
    }  # fmt: skip
    full = f"--task all --queries {args.queries}"
    s.mvlt("main_eval", *evaluate, *f"--checkpoint {out}/main_ft --out {out}/main_eval {full}".split())
    s.pack()
    for name, proc in ablations.items():
        s.wait(f"abl_{name}", proc, reserve=60)
    s.pack()
    same = f"--task retrieval --candidates {out}/main_eval/retrieval_candidates.json --threads 2"
    evals = {
        name: s.launch(f"abl_{name}_eval", *evaluate,
                       *f"--checkpoint {out}/abl_{name} --out {out}/abl_{name}_eval {same}".split())
        for name in ABLATIONS
    }  # fmt: skip
    for name, proc in evals.items():
        s.wait(f"abl_{name}_eval", proc, reserve=5)


if __name__ == "__main__":
    sys.exit(main())
