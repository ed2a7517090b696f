"""Interrupted and damaged runs: a corrupt file in the latest checkpoint, a checkpoint picked by
name, a resume that asks for another architecture, an image that breaks mid-training, bad rows
skipped, the time budget per invocation, and ``train.log``'s last line.

Each stops or corrupts a real run (``mvlt_nano``, synthetic catalogue); where the run can go on,
it ends bit-identical to a run that was never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mvlt.data.errors import DataError
from mvlt.data.sources import open_catalogue
from mvlt.train import TrainConfig, latest_checkpoint, list_checkpoints, train
from mvlt.train.cli import main
from mvlt.train.data import ResumableSampler

from .helpers import IMAGE_SIZE, interrupt_at, same_weights, synthetic_manifest, tiny_config

STEPS = 10  # 6 steps per epoch: every resumed run crosses an epoch boundary
CORRUPTIONS = {
    "truncated optimizer.pt": ("optimizer.pt", lambda data: data[: len(data) // 2]),
    "garbage rng.pt": ("rng.pt", lambda data: b"not a checkpoint file " * 8),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """The uninterrupted run that every resumed one must match."""
    out = tmp_path_factory.mktemp("reference")
    train(tiny_config(out, tokenizer_dir, steps=STEPS, checkpoint_every=2, log_every=1))
    return out


def killed_run(out: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> TrainConfig:
    """A run stopped by a real SIGTERM in step 5: checkpoints at steps 2, 4 and 5."""
    cfg = tiny_config(out, tokenizer_dir, steps=STEPS, checkpoint_every=2, log_every=1)
    interrupt_at(monkeypatch, 5)
    result = train(cfg)
    monkeypatch.undo()
    assert result.interrupted == "SIGTERM" and result.steps == 5
    assert [p.name for p in list_checkpoints(out)] == ["step-0000002", "step-0000004", "step-0000005"]
    assert "interrupted by SIGTERM at step 5/10" in last_log_line(out)
    return cfg


def last_log_line(out: Path) -> str:
    return (out / "train.log").read_text(encoding="utf-8").strip().splitlines()[-1]


def logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def resume(out: Path, *extra: str) -> int:
    return main(["pretrain", "--out", str(out), "--resume", *extra, "--no-progress"])


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(CORRUPTIONS))
def test_a_corrupt_latest_checkpoint_falls_back_loudly_and_resumes_exactly(
    damage: str, tmp_path: Path, tokenizer_dir: Path, reference: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "run"
    killed_run(out, tokenizer_dir, monkeypatch)
    name, corrupt = CORRUPTIONS[damage]
    broken = out / "checkpoints" / "step-0000005" / name
    broken.write_bytes(corrupt(broken.read_bytes()))
    capsys.readouterr()
    assert resume(out) == 0
    err = capsys.readouterr().err
    assert f"warning: cannot resume from step-0000005: {broken} is truncated or corrupt" in err
    assert "resuming from step-0000004, the newest checkpoint that loads" in err
    assert "Traceback" not in err
    assert "cannot resume from step-0000005" in (out / "train.log").read_text()
    assert same_weights(out, reference)
    assert logged_steps(out) == list(range(1, STEPS + 1))
    assert last_log_line(out).startswith(f"mvlt pretrain done: {STEPS}/{STEPS} steps")


@pytest.mark.slow
def test_resume_from_a_named_checkpoint(
    tmp_path: Path, tokenizer_dir: Path, reference: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "run"
    killed_run(out, tokenizer_dir, monkeypatch)
    assert resume(out, "step-0000003") == 2  # no such checkpoint: the command line is wrong
    assert "there: step-0000002, step-0000004, step-0000005" in capsys.readouterr().err
    rng = out / "checkpoints" / "step-0000004" / "rng.pt"
    rng.write_bytes(b"")
    assert resume(out, "4") == 1  # a checkpoint picked by name never falls back
    err = capsys.readouterr().err
    assert err.startswith("mvlt pretrain: error:") and f"{rng} is truncated or corrupt" in err
    assert resume(out, "step-0000002") == 0
    assert f"resuming from {out / 'checkpoints' / 'step-0000002'} (step 2)" in capsys.readouterr().err
    assert same_weights(out, reference)
    assert logged_steps(out) == list(range(1, STEPS + 1))


def test_no_checkpoint_that_loads_is_one_clear_error(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "run"
    train(tiny_config(out, tokenizer_dir, steps=2, checkpoint_every=1))
    for path in list_checkpoints(out):
        (path / "optimizer.pt").write_bytes(b"\x00" * 10)
    assert resume(out) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mvlt pretrain: error: --resume: no checkpoint under")
    assert "step-0000001/optimizer.pt" in err and "step-0000002/optimizer.pt" in err


def test_resume_refuses_another_architecture_but_not_a_longer_run(
    tmp_path: Path, tokenizer_dir: Path, capsys
) -> None:
    out = tmp_path / "run"
    train(tiny_config(out, tokenizer_dir, steps=2))
    capsys.readouterr()
    assert resume(out, "--model", "mvlt_tiny", "--image-size", "96") == 2
    err = capsys.readouterr().err
    assert "model 'mvlt_nano' -> 'mvlt_tiny'" in err and f"image_size {IMAGE_SIZE} -> 96" in err
    assert "model: mvlt_nano" in (out / "config.yaml").read_text()  # not rewritten
    with pytest.raises(ValueError, match="recipe 'mvlt' -> 'paper'"):
        train(tiny_config(out, tokenizer_dir, steps=2, recipe="paper"), resume=True)
    # The run length, the schedule and the workers may change.
    assert resume(out, "--steps", "3", "--warmup-steps", "1", "--workers", "0") == 0
    assert latest_checkpoint(out).name == "step-0000003"


@pytest.mark.slow
def test_an_unreadable_image_mid_training_saves_first_then_resumes_exactly(
    tmp_path: Path, tokenizer_dir: Path
) -> None:
    manifest = synthetic_manifest(tmp_path / "data")
    cfg = tiny_config(tmp_path / "run", tokenizer_dir, data=str(manifest), data_options={}, steps=8,
                      checkpoint_every=100, log_every=1, image_cache="off")  # fmt: skip
    reference = train(cfg.replace(out=str(tmp_path / "reference"))).out
    # Break the image that step 4 loads first: steps 1-3 train, then the run meets it.
    catalogue = open_catalogue(manifest, split="train")
    sampler = ResumableSampler(catalogue, 1, 0, seed=cfg.seed)
    sampler.set_epoch(0)
    row = list(sampler)[3 * cfg.batch_size]
    image = catalogue.image_paths[row]
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 3])

    out = Path(cfg.out)
    with pytest.raises(DataError) as err:
        train(cfg)
    message = str(err.value)
    assert f"{manifest}, {catalogue.row_name(row)}" in message and image.name in message
    assert f"mvlt pretrain --out {out} --resume" in message
    assert latest_checkpoint(out).name == "step-0000003"  # saved before stopping, as on SIGTERM
    assert last_log_line(out).startswith("mvlt pretrain: error:")

    image.write_bytes(good)
    train(cfg, resume=True)
    assert same_weights(out, reference)
    assert logged_steps(out) == list(range(1, 9))


def test_with_the_image_cache_a_bad_image_stops_the_run_before_it_starts(
    tmp_path: Path, tokenizer_dir: Path, capsys
) -> None:
    """The cache decodes every image before step 1, so a bad one is found then, named by row."""
    manifest = synthetic_manifest(tmp_path / "data")
    catalogue = open_catalogue(manifest, split="train")
    image = catalogue.image_paths[7]
    image.write_bytes(image.read_bytes()[:40])
    out = tmp_path / "run"
    assert main(["pretrain", *manifest_args(out, manifest, "--tokenizer", str(tokenizer_dir))]) == 1
    err = capsys.readouterr().err
    assert f"mvlt pretrain: error: {manifest}, {catalogue.row_name(7)}: " in err and image.name in err
    assert latest_checkpoint(out) is None


def manifest_args(out: Path, manifest: Path, *extra: str) -> list[str]:
    return ["--data", str(manifest), "--image-size", str(IMAGE_SIZE), "--batch-size", "8", "--steps", "1",
            "--precision", "fp32", "--threads", "1", "--no-progress", "--no-tensorboard", "--out", str(out),
            *extra]  # fmt: skip


def test_skip_bad_rows_on_pretrain_and_finetune(tmp_path: Path, tokenizer_dir: Path, capsys) -> None:
    manifest = synthetic_manifest(tmp_path / "data")
    catalogue = open_catalogue(manifest, split="train")
    catalogue.image_paths[1].unlink()
    catalogue.image_paths[2].write_bytes(b"not a png")
    pre, tokenizer = tmp_path / "pre", ["--tokenizer", str(tokenizer_dir)]
    assert main(["pretrain", *manifest_args(pre, manifest, *tokenizer)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mvlt pretrain: error:") and catalogue.row_name(1) in err
    assert "image file not found" in err

    assert main(["pretrain", *manifest_args(pre, manifest, *tokenizer, "--skip-bad-rows")]) == 0
    skipped = (f"skipped 2 bad rows of {manifest}: 1 bad_image, 1 missing_file "
               f"({catalogue.row_name(1)}; {catalogue.row_name(2)})")  # fmt: skip
    assert skipped in (pre / "train.log").read_text()
    fine = tmp_path / "fine"
    assert main(["finetune", *manifest_args(fine, manifest, "--init", str(pre), "--skip-bad-rows")]) == 0
    assert skipped in (fine / "train.log").read_text()


def test_the_time_budget_is_per_invocation(tmp_path: Path, tokenizer_dir: Path, monkeypatch, capsys) -> None:
    """``--max-minutes`` gives each invocation, a resumed one too, the whole budget (documented)."""
    import mvlt.train.engine as engine

    from ..test_readme import README

    clock = iter(range(0, 1_000_000, 40))  # every perf_counter call advances 40 s
    monkeypatch.setattr(engine.time, "perf_counter", lambda: float(next(clock)))
    cfg = tiny_config(tmp_path / "run", tokenizer_dir, steps=40, max_minutes=2.0)
    first = train(cfg)
    second = train(cfg, resume=True)
    assert first.interrupted == second.interrupted == engine.TIME_BUDGET
    assert second.steps - first.steps >= first.steps - 1 > 0
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "M minutes of this invocation; --resume continues, with M again" in " ".join(
        capsys.readouterr().out.split()
    )
    assert "`--max-minutes M` is a budget per invocation" in README.read_text()
