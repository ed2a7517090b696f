"""The student-probe diagnostic (``experiments/pretrained/student_probe.py``): linear probes on a
trained model's [CLS] and ITC embeddings beside its own sub-category head."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mvlt.train import train

from ..train.helpers import synthetic_manifest, tiny_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "pretrained" / "student_probe.py"


def test_a_missing_checkpoint_is_named_without_a_traceback(tmp_path: Path):
    args = ["--checkpoint", str(tmp_path / "nope"), "--data", "x.csv", "--out", str(tmp_path / "o.json")]
    run = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert run.returncode == 2 and "nope" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_probes_and_the_head_are_scored_on_the_asked_split(tmp_path: Path, monkeypatch):
    manifest = synthetic_manifest(tmp_path / "shop")
    pre = train(tiny_config(tmp_path / "pre", "train", data=str(manifest), data_options={}, steps=2,
                            vocab_size=200))  # fmt: skip
    fine = train(tiny_config(tmp_path / "fine", None, task="finetune", init=str(pre.out), data=str(manifest),
                             data_options={}, image_size=None, steps=2, fit_heads=True))  # fmt: skip
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "student_probe", raising=False)
    import student_probe

    out = tmp_path / "probe.json"
    record = student_probe.main(["--checkpoint", str(fine.out), "--data", str(manifest), "--split", "test",
                                 "--out", str(out), "--threads", "1"])  # fmt: skip
    assert out.is_file() and record["split"] == "test" and record["items"] > 0
    assert 0 <= record["head_acc"] <= 1
    for name in student_probe.FEATURES:
        assert 0 <= record[f"probe_{name}"]["acc"] <= 1 and record[f"probe_{name}"]["l2"] > 0


@pytest.mark.slow
def test_teacher_soft_targets_add_one_probe_per_weight(tmp_path: Path, monkeypatch):
    manifest = synthetic_manifest(tmp_path / "shop")
    pre = train(tiny_config(tmp_path / "pre", "train", data=str(manifest), data_options={}, steps=2,
                            vocab_size=200))  # fmt: skip
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "student_probe", raising=False)
    import student_probe

    def fake_teacher(catalogue, cache=None):  # features that know each row's sub-category
        names = sorted(set(catalogue.subcategories))
        codes = torch.tensor([names.index(s) for s in catalogue.subcategories])
        return {
            "image": torch.nn.functional.one_hot(codes, len(names)).float(),
            "text": torch.ones(len(codes), 2),
        }

    monkeypatch.setattr(student_probe, "teacher_features", fake_teacher)
    args = ["--checkpoint", str(pre.out), "--data", str(manifest), "--split", "test", "--threads", "1"]
    record = student_probe.main([*args, "--out", str(tmp_path / "p.json"), "--teacher-weights", "0.5,1"])
    assert record["teacher_pair"]["out_of_fold_acc"] > 0.9
    for weight in ("0.5", "1"):
        assert 0 <= record[f"probe_cls_teacher{weight}"]["acc"] <= 1
    for bad in ("0", "half"):
        with pytest.raises(ValueError, match="--teacher-weights"):
            student_probe.main([*args, "--out", str(tmp_path / "q.json"), "--teacher-weights", bad])
