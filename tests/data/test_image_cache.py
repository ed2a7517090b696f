"""The decoded-image cache: the same tensors as decoding, rebuilt when an image or a setting
changes, never half-built, and switched off on request."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import mvlt.data.image_cache as image_cache
from mvlt.data import (
    DataError,
    ImageCache,
    PairDataset,
    PretrainDataset,
    SyntheticCatalogue,
    Tokenizer,
    build_image_cache,
    open_catalogue,
    open_image_cache,
    prepare_image,
)
from mvlt.data.image_cache import cache_path, default_cache_dir

SIZE = 32


def _picture(path: Path, seed: int, size: tuple[int, int], mode: str = "RGB") -> None:
    """Noise on a white background, so resizing, padding and background cropping all matter."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = np.full((h, w, 3), 255, np.uint8)
    arr[h // 5 : h - h // 6, w // 4 : w - w // 7] = rng.integers(
        0, 255, (h - h // 5 - h // 6, w - w // 4 - w // 7, 3)
    )
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode != "RGB" else img
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _catalogue_files(folder: Path, files: Any, n: int = 10) -> Path:
    """A manifest of ``n`` rows with JPEG / PNG (RGB, RGBA, L) images of several shapes."""
    rows = files.default_rows(n)
    kinds = [("jpg", "RGB"), ("png", "RGBA"), ("png", "L"), ("png", "RGB")]
    for i, row in enumerate(rows):
        ext, mode = kinds[i % len(kinds)]
        row["image"] = f"images/{i:03d}.{ext}"
        _picture(folder / row["image"], i, (40 + 7 * i, 90 - 5 * i), mode)
    return files.write_csv(folder / "metadata.csv", rows, images=False)


@pytest.fixture
def manifest_path(tmp_path: Path, files: Any) -> Path:
    return _catalogue_files(tmp_path / "data", files)


@pytest.fixture(scope="module")
def tokenizer(bert_vocab: Path) -> Tokenizer:
    return Tokenizer.from_vocab(bert_vocab)


def _batches(dataset: Any, workers: int = 0) -> list[dict[str, Any]]:
    loader = DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=dataset.collate)
    return list(loader)


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


@pytest.mark.parametrize("resize", ["pad", "crop_stretch"])
def test_cached_batches_are_identical(
    manifest_path: Path, tokenizer: Tokenizer, tmp_path: Path, resize: str
) -> None:
    catalogue = open_catalogue(manifest_path)
    cache = build_image_cache(catalogue, SIZE, resize, tmp_path / "cache", progress=False)
    for i in range(len(catalogue)):
        assert torch.equal(cache.image(i), prepare_image(catalogue.load_image(i), SIZE, resize))
    options: dict[str, Any] = {"image_size": SIZE, "resize": resize, "mask_unit": 8, "seed": 3, "epoch": 1}
    plain = PretrainDataset(catalogue, tokenizer, **options)
    cached = PretrainDataset(catalogue, tokenizer, image_cache=cache, **options)
    _same(_batches(plain), _batches(cached))
    _same(_batches(plain), _batches(cached, workers=1))  # the cache travels to a worker by path
    pairs = {"image_size": SIZE, "resize": resize}
    _same(_batches(PairDataset(catalogue, tokenizer, **pairs)),
          _batches(PairDataset(catalogue, tokenizer, image_cache=cache, **pairs)))  # fmt: skip


def test_parallel_build_equals_serial(
    manifest_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = open_catalogue(manifest_path)
    monkeypatch.setattr(image_cache, "_CHUNK", 3)
    serial = build_image_cache(catalogue, SIZE, "pad", tmp_path / "a", workers=1, progress=False)
    parallel = build_image_cache(catalogue, SIZE, "pad", tmp_path / "b", workers=2, progress=False)
    assert np.array_equal(serial.array, parallel.array)


def test_pickled_cache_carries_no_pixels(manifest_path: Path, tmp_path: Path) -> None:
    cache = build_image_cache(open_catalogue(manifest_path), SIZE, "pad", tmp_path / "c", progress=False)
    _ = cache.array
    copy = pickle.loads(pickle.dumps(cache))
    assert copy._array is None and len(pickle.dumps(cache)) < 1000
    assert np.array_equal(copy.pixels(3), cache.pixels(3))


def _built(folder: Path) -> list[Path]:
    return sorted(folder.glob("images-*.npy"))


def test_changed_image_rebuilds(manifest_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    first = build_image_cache(open_catalogue(manifest_path), SIZE, "pad", folder, progress=False)
    again = build_image_cache(open_catalogue(manifest_path), SIZE, "pad", folder, progress=False)
    assert again.path == first.path and _built(folder) == [first.path]

    picture = manifest_path.parent / "images" / "002.png"
    stat = picture.stat()
    _picture(picture, 99, (40 + 14, 90 - 10), "L")  # same file, new pixels
    os.utime(picture, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    catalogue = open_catalogue(manifest_path)
    changed = build_image_cache(catalogue, SIZE, "pad", folder, progress=False)
    assert changed.path != first.path and len(_built(folder)) == 2
    assert torch.equal(changed.image(2), prepare_image(catalogue.load_image(2), SIZE, "pad"))
    assert not torch.equal(changed.image(2), first.image(2))
    assert np.array_equal(changed.array[3:], first.array[3:])


def test_changed_setting_or_rows_rebuild(
    manifest_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = open_catalogue(manifest_path)
    base = cache_path(catalogue, SIZE, "pad", tmp_path)
    assert cache_path(catalogue, 64, "pad", tmp_path) != base
    assert cache_path(catalogue, SIZE, "crop_stretch", tmp_path) != base
    assert cache_path(open_catalogue(manifest_path, split="train"), SIZE, "pad", tmp_path) != base
    monkeypatch.setattr(image_cache, "PREPROCESS_VERSION", image_cache.PREPROCESS_VERSION + 1)
    assert cache_path(catalogue, SIZE, "pad", tmp_path) != base


def test_interrupted_build_leaves_nothing_used(
    manifest_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = open_catalogue(manifest_path)
    folder = tmp_path / "cache"
    calls = {"n": 0}
    real = image_cache.prepare_pixels

    def failing(*args: Any, **kwargs: Any) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the build
        return real(*args, **kwargs)

    monkeypatch.setattr(image_cache, "prepare_pixels", failing)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(catalogue, SIZE, "pad", folder, workers=1, progress=False)
    assert _built(folder) == [] and not list(folder.glob("*.tmp-*"))
    monkeypatch.setattr(image_cache, "prepare_pixels", real)

    # A build killed outright leaves its temporary: never read, removed by the next build.
    path = cache_path(catalogue, SIZE, "pad", folder)
    stale = path.with_name(f".{path.name}.tmp-999999")
    stale.write_bytes(b"half a cache")
    other = folder / ".images-64px-pad-0123456789abcdef01234567.npy.tmp-999999"
    other.write_bytes(b"another interrupted build")
    cache = build_image_cache(catalogue, SIZE, "pad", folder, workers=1, progress=False)
    assert not stale.exists() and not other.exists() and _built(folder) == [path]
    assert torch.equal(cache.image(4), prepare_image(catalogue.load_image(4), SIZE, "pad"))


def test_a_truncated_cache_file_is_rebuilt(manifest_path: Path, tmp_path: Path) -> None:
    catalogue = open_catalogue(manifest_path)
    cache = build_image_cache(catalogue, SIZE, "pad", tmp_path, progress=False)
    cache.path.write_bytes(cache.path.read_bytes()[:200])  # not a valid array of this shape
    again = build_image_cache(catalogue, SIZE, "pad", tmp_path, progress=False)
    assert torch.equal(again.image(9), prepare_image(catalogue.load_image(9), SIZE, "pad"))


def test_bad_image_names_row_and_file(manifest_path: Path, tmp_path: Path) -> None:
    (manifest_path.parent / "images" / "004.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (manifest_path.parent / "images" / "000.jpg").unlink()
    _picture(manifest_path.parent / "images" / "000.jpg", 0, (40, 90))
    catalogue = open_catalogue(manifest_path)
    with pytest.raises(DataError, match=r"row 5 \(line 6\): .*004\.jpg") as err:
        build_image_cache(catalogue, SIZE, "pad", tmp_path / "cache", workers=1, progress=False)
    assert err.value.reason == "bad_image" and _built(tmp_path / "cache") == []
    skipping = open_catalogue(manifest_path, skip_bad_rows=True)  # the row is dropped at open
    assert len(skipping) == 9 and skipping.skipped == {"bad_image": 1}
    cache = build_image_cache(skipping, SIZE, "pad", tmp_path / "cache", progress=False)
    assert torch.equal(cache.image(4), prepare_image(skipping.load_image(4), SIZE, "pad"))


def test_switches(manifest_path: Path, tmp_path: Path) -> None:
    catalogue = open_catalogue(manifest_path)
    assert open_image_cache(catalogue, SIZE, "pad", "off") is None
    assert open_image_cache(catalogue, SIZE, "pad", None) is None
    synthetic = SyntheticCatalogue(num_products=20, seed=1, image_size=SIZE)
    assert open_image_cache(synthetic, SIZE, "pad", "auto") is None  # drawn in memory
    assert open_image_cache(synthetic, SIZE, "pad", str(tmp_path)) is None
    auto = open_image_cache(catalogue, SIZE, "pad", "auto", progress=False)
    assert isinstance(auto, ImageCache) and auto.path.parent == default_cache_dir()
    assert default_cache_dir() == Path(os.environ["MVLT_CACHE_DIR"]) / "images"  # the tests' own
    chosen = open_image_cache(catalogue, SIZE, "pad", str(tmp_path / "mine"), progress=False)
    assert chosen is not None and chosen.path.parent == tmp_path / "mine"


def test_a_cache_of_another_shape_is_refused(
    manifest_path: Path, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    catalogue = open_catalogue(manifest_path)
    cache = build_image_cache(catalogue, SIZE, "pad", tmp_path, progress=False)
    with pytest.raises(ValueError, match="needs 10 at 64 px"):
        PairDataset(catalogue, tokenizer, image_size=64, image_cache=cache)
    with pytest.raises(ValueError, match="needs 2 at 32 px"):
        PairDataset(
            open_catalogue(manifest_path, split="test"), tokenizer, image_size=SIZE, image_cache=cache
        )
    reordered = open_catalogue(manifest_path)
    reordered.image_paths.reverse()
    with pytest.raises(ValueError, match="made from other rows or image files"):
        PairDataset(reordered, tokenizer, image_size=SIZE, image_cache=cache)
