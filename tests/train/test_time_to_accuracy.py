"""benchmarks/time_to_accuracy.py end to end on a tiny run: chunks that resume, evaluations on
the same lists, the record and the picture (the benchmark is timed on a quiet machine, not here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from .helpers import tiny_config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def tta(monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "time_to_accuracy", raising=False)
    import time_to_accuracy

    def tiny(args):  # 3 steps in chunks of one (a budget far below a step)
        return tiny_config(args.out / "train", tokenizer_dir, steps=3, max_minutes=1e-6, fit_minutes=5.0)

    monkeypatch.setattr(time_to_accuracy, "training_config", tiny)
    return time_to_accuracy


@pytest.mark.slow
def test_every_chunk_is_scored_on_the_same_lists_until_the_run_ends(tta, tmp_path: Path) -> None:
    out, record_path, picture = tmp_path / "run", tmp_path / "tta.json", tmp_path / "tta.png"
    argv = ["--out", str(out), "--queries", "6", "--negatives", "5", "--target", "0.999",
            "--json", str(record_path), "--picture", str(picture)]  # fmt: skip
    assert tta.main(argv) == 1  # not reached: exit 1, the record still written
    record = json.loads(record_path.read_text())
    assert record["minutes_to_target"] is None
    assert [p["step"] for p in record["points"]] == [1, 2, 3]
    assert all(0 <= p["tir_r5"] <= 1 and p["eval_seconds"] >= 0 for p in record["points"])
    lists = [json.loads((out / f"eval-{i:02d}" / "retrieval_candidates.json").read_text()) for i in range(3)]
    assert lists[0]["repeats"] == lists[1]["repeats"] == lists[2]["repeats"]
    assert Image.open(picture).size[0] > 0
    with pytest.raises(SystemExit, match="exists"):
        tta.main(argv)


@pytest.mark.slow
def test_the_run_stops_at_the_target(tta, tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path / "run"), "--queries", "6", "--negatives", "5", "--target", "1e-9"]
    assert tta.main(argv) == 0


def test_design_flags_reach_the_training_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import time_to_accuracy

    argv = ["--out", str(tmp_path / "run"), "--pair-head", "--batch-groups", "16",
            "--loss-weights", "kd_image=8, kd_text=8", "--teachers", "text,image"]  # fmt: skip
    config = time_to_accuracy.training_config(time_to_accuracy.parse_args(argv))
    assert config.model_overrides == {"pair_head": True} and config.batch_groups == 16
    assert config.loss_weights == {"kd_image": 8.0, "kd_text": 8.0}
    config.validate()
    plain = time_to_accuracy.training_config(time_to_accuracy.parse_args(["--out", str(tmp_path / "b")]))
    assert plain.model_overrides == {} and plain.batch_groups == 0 and plain.loss_weights == {}
    with pytest.raises(SystemExit) as exit_info:
        time_to_accuracy.parse_args(["--loss-weights", "kd_image"])
    assert exit_info.value.code == 2


def test_set_reaches_any_pre_training_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import time_to_accuracy

    argv = ["--out", str(tmp_path / "run"), "--pair-head", "--set", "weight_decay=0.1",
            "--set", "model_overrides.drop_path_rate=0.1", "--finetune-minutes", "1"]  # fmt: skip
    args = time_to_accuracy.parse_args(argv)
    config = time_to_accuracy.training_config(args)
    assert config.weight_decay == 0.1 and config.model_overrides == {"pair_head": True, "drop_path_rate": 0.1}
    config.validate()
    assert time_to_accuracy.finetune_config(config, args).weight_decay == 0.1  # carried to fine-tuning
    plain = time_to_accuracy.parse_args(["--out", str(tmp_path / "plain")])
    assert time_to_accuracy.training_config(plain).weight_decay == 0.01
    with pytest.raises(SystemExit) as exit_info:  # a malformed item is refused by the parser
        time_to_accuracy.parse_args(["--set", "weight_decay"])
    assert exit_info.value.code == 2
    bad = ["--out", str(tmp_path / "bad"), "--set", "weight_decy=0.1"]
    assert time_to_accuracy.main(bad) == 2 and not (tmp_path / "bad").exists()  # one line, nothing made


def test_model_augmentation_and_shared_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import time_to_accuracy

    shared = tmp_path / "caches"
    argv = ["--out", str(tmp_path / "run"), "--model", "mvlt_micro", "--augment", "flip,crop",
            "--shared-caches", str(shared), "--split", "val"]  # fmt: skip
    args = time_to_accuracy.parse_args(argv)
    config = time_to_accuracy.training_config(args)
    assert config.model == "mvlt_micro" and config.augment == ["flip", "crop"] and args.split == "val"
    assert Path(config.image_cache).parent == shared and Path(config.teacher_cache).parent == shared
    plain = time_to_accuracy.training_config(time_to_accuracy.parse_args(["--out", str(tmp_path / "b")]))
    assert Path(plain.image_cache).parent == tmp_path / "b" and plain.model == "mvlt_nano"
    assert plain.augment is None and plain.image_size == 96
    sized = time_to_accuracy.parse_args(["--out", str(tmp_path / "c"), "--image-size", "128", "--lr", "2e-3"])
    assert time_to_accuracy.training_config(sized).image_size == 128
    assert time_to_accuracy.training_config(sized).lr == 2e-3 and plain.lr == 1e-3 and plain.itc_memory == 0
    annealing = time_to_accuracy.parse_args(["--out", str(tmp_path / "h"), "--kd-decay-start", "0.5"])
    assert time_to_accuracy.training_config(annealing).kd_decay_start == 0.5 and plain.kd_decay_start == 1.0
    remembered = time_to_accuracy.parse_args(["--out", str(tmp_path / "e"), "--itc-memory", "512"])
    assert time_to_accuracy.training_config(remembered).itc_memory == 512
    for extra, fits in (["--fit-heads"], True), ([], False):
        args = time_to_accuracy.parse_args(["--out", str(tmp_path / "d"), "--finetune-minutes", "1", *extra])
        config = time_to_accuracy.training_config(args)
        assert time_to_accuracy.finetune_config(config, args).fit_heads is fits
    soft = [
        "--out",
        str(tmp_path / "f"),
        "--finetune-minutes",
        "1",
        "--fit-heads",
        "--fit-heads-teacher",
        "0.6",
    ]
    args = time_to_accuracy.parse_args(soft)
    assert (
        time_to_accuracy.finetune_config(time_to_accuracy.training_config(args), args).fit_heads_teacher
        == 0.6
    )
    args = time_to_accuracy.parse_args(
        ["--out", str(tmp_path / "g"), "--finetune-minutes", "1", "--heads-read-itc"]
    )
    config = time_to_accuracy.training_config(args)
    assert config.model_overrides == {}  # pre-training has no recognition heads
    assert time_to_accuracy.finetune_config(config, args).model_overrides == {"recognition_reads_itc": True}
    teacher_alone = ["--finetune-minutes", "1", "--fit-heads-teacher", "0.6"]
    for bad in (
        ["--model", "mvlt_huge"],
        ["--image-size", "0"],
        ["--lr", "0"],
        ["--fit-heads"],
        teacher_alone,
        ["--heads-read-itc"],
        ["--kd-decay-start", "1.5"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            time_to_accuracy.parse_args(bad)
        assert exit_info.value.code == 2, bad


def test_each_stage_is_scored_by_the_heads_it_trains(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import time_to_accuracy

    def stages(*flags: str) -> tuple[str, str]:
        args = time_to_accuracy.parse_args(["--out", str(tmp_path / "r"), "--finetune-minutes", "1", *flags])
        config = time_to_accuracy.training_config(args)
        return time_to_accuracy.scorer(config, args), time_to_accuracy.scorer(
            time_to_accuracy.finetune_config(config, args), args
        )

    assert stages() == ("itc+itm", "itc+itm")
    assert stages("--objectives", "itc,mlm") == ("itc", "itc+itm")  # ITM is back on in fine-tuning
    assert stages("--objectives", "itc,mlm", "--score", "itc") == ("itc", "itc")
    with pytest.raises(SystemExit) as exit_info:  # an untrained ITM head asked to re-rank
        time_to_accuracy.parse_args(["--objectives", "itc,mlm", "--score", "itc+itm"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_a_pretraining_without_itm_is_scored_by_itc(
    tta, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tokenizer_dir: Path
) -> None:
    def contrastive(args):  # the tiny run, ITC alone
        return tiny_config(
            args.out / "train", tokenizer_dir, steps=1, max_minutes=1e-6, fit_minutes=5.0, objectives=["itc"]
        )

    monkeypatch.setattr(tta, "training_config", contrastive)
    out, record_path = tmp_path / "run", tmp_path / "tta.json"
    argv = ["--out", str(out), "--queries", "6", "--negatives", "5", "--target", "0.999",
            "--json", str(record_path)]  # fmt: skip
    assert tta.main(argv) == 1
    assert [p["score"] for p in json.loads(record_path.read_text())["points"]] == ["itc"]
    protocol = json.loads((out / "eval-00" / "metrics.json").read_text())["protocol"]["retrieval"]
    assert protocol["scorers"] == ["itc"]


@pytest.mark.slow
def test_finetuning_scores_recognition_on_the_finetuned_model(tta, tmp_path: Path) -> None:
    out, record_path = tmp_path / "run", tmp_path / "tta.json"
    argv = ["--out", str(out), "--queries", "6", "--negatives", "5", "--target", "1e-9",
            "--finetune-minutes", "0.05", "--json", str(record_path)]  # fmt: skip
    assert tta.main(argv) == 0
    fine = json.loads(record_path.read_text())["finetuned"]
    assert fine["recipe"]["task"] == "finetune" and fine["recipe"]["loss_weights"]["itm"] == 3.0
    assert fine["score"] == "itc+itm"
    assert 0 <= fine["scr_acc"] <= 1 and 0 <= fine["mcr_acc"] <= 1 and 0 <= fine["tir_r5"] <= 1
    lists = [
        json.loads((out / d / "retrieval_candidates.json").read_text()) for d in ("eval-00", "eval-finetuned")
    ]
    assert lists[0]["repeats"] == lists[1]["repeats"]  # the same lists before and after fine-tuning
    with pytest.raises(SystemExit) as exit_info:
        tta.parse_args(["--finetune-minutes", "-1"])
    assert exit_info.value.code == 2


def test_a_bad_flag_is_one_line_and_leaves_no_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import time_to_accuracy

    out = tmp_path / "run"
    for flags, named in (
        (["--augment", "bogus"], "augment"),
        (["--data", str(tmp_path / "none.csv")], "none.csv"),
    ):
        assert time_to_accuracy.main(["--out", str(out), "--data", "synthetic", *flags]) == 2
        assert named in capsys.readouterr().err and not out.exists()  # the same command can be re-run


@pytest.mark.slow
def test_a_pretraining_that_learns_recognition_is_scored_on_it(
    tta, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tokenizer_dir: Path
) -> None:
    def recognising(args):  # the tiny run, with the recognition heads trained from the start
        return tiny_config(
            args.out / "train", tokenizer_dir, steps=2, max_minutes=1e-6, fit_minutes=5.0,
            objectives=["itc", "itm", "category", "subcategory"],
        )  # fmt: skip

    monkeypatch.setattr(tta, "training_config", recognising)
    record_path = tmp_path / "tta.json"
    argv = ["--out", str(tmp_path / "run"), "--queries", "6", "--negatives", "5", "--target", "0.999",
            "--json", str(record_path)]  # fmt: skip
    assert tta.main(argv) == 1
    points = json.loads(record_path.read_text())["points"]
    assert len(points) == 2 and all(0 <= p["scr_acc"] <= 1 and 0 <= p["mcr_acc"] <= 1 for p in points)
