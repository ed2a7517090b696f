"""Training reads the decoded-image cache: the same run, bit for bit, with it and without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvlt.data.image_cache import default_cache_dir
from mvlt.data.sources import open_catalogue
from mvlt.train import ConfigError, TrainConfig, train
from mvlt.train.data import build_dataset

from .helpers import IMAGE_SIZE, same_weights, synthetic_manifest, tiny_config
from .test_config import _parse


def test_the_same_weights_with_and_without_the_cache(tmp_path: Path, tokenizer_dir: Path) -> None:
    manifest = synthetic_manifest(tmp_path / "data")
    cfg = tiny_config(tmp_path / "off", tokenizer_dir, data=str(manifest), data_options={}, steps=3,
                      image_cache="off")  # fmt: skip
    off = train(cfg).out
    cached = train(cfg.replace(out=str(tmp_path / "on"), image_cache=str(tmp_path / "cache"))).out
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 1
    assert same_weights(off, cached)


def test_which_catalogues_get_a_cache(tmp_path: Path, tokenizer_dir: Path) -> None:
    from mvlt.data import Tokenizer

    manifest = synthetic_manifest(tmp_path / "data", num_products=20)
    tokenizer = Tokenizer.load(tokenizer_dir)
    cfg = tiny_config(tmp_path / "run", tokenizer_dir, data=str(manifest), data_options={})
    catalogue = open_catalogue(manifest, split="train")

    def dataset(config: TrainConfig, data: object = catalogue) -> object:
        weights, schedule = config.resolved_loss_weights(), config.resolved_input_schedule()
        return build_dataset(config, data, tokenizer, None, IMAGE_SIZE, weights, schedule, progress=False)

    auto = dataset(cfg).image_cache  # type: ignore[attr-defined]
    assert auto is not None and auto.path.parent == default_cache_dir()
    assert dataset(cfg.replace(image_cache="off")).image_cache is None  # type: ignore[attr-defined]
    synthetic = open_catalogue("synthetic", split="train", num_products=20, image_size=IMAGE_SIZE)
    assert dataset(cfg, synthetic).image_cache is None  # type: ignore[attr-defined]


def test_the_flag(tmp_path: Path) -> None:
    args = _parse(["pretrain", "--image-cache", "off", "--out", str(tmp_path / "o")])
    from mvlt.train.cli import resolve_config

    assert resolve_config(args, "pretrain").image_cache == "off"
    assert TrainConfig().image_cache == "auto"
    with pytest.raises(ConfigError, match="image_cache"):
        TrainConfig(image_cache=" ").validate()


def test_a_run_stopped_and_resumed_on_the_cache_ends_as_one_that_never_stopped(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache keeps resume exact: the resumed run reads the same pixels at the same data position
    (the first run built the cache, the resumed one memory-maps it)."""
    from .helpers import interrupt_at

    manifest = synthetic_manifest(tmp_path / "data")
    cfg = tiny_config(tmp_path / "whole", tokenizer_dir, data=str(manifest), data_options={}, steps=8,
                      image_cache=str(tmp_path / "cache"))  # fmt: skip
    whole = train(cfg).out
    stopped = cfg.replace(out=str(tmp_path / "stopped"))
    with monkeypatch.context() as patch:
        interrupt_at(patch, 4)
        assert train(stopped).interrupted == "SIGTERM"
    assert train(stopped, resume=True).steps == 8
    assert same_weights(whole, Path(stopped.out))
