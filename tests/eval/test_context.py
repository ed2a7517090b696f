"""Shared evaluation plumbing: precision choice, the prepared-image cache, task parsing, report pictures."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from mvlt.data.images import prepare_image
from mvlt.eval.context import EvalContext
from mvlt.eval.report import data_uri, draw_confusion
from mvlt.eval.runner import draw_rows, parse_tasks


class PictureCatalogue:
    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.pictures = [Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)) for _ in range(n)]
        self.texts = [f"text {i}" for i in range(n)]

    def __getitem__(self, i: int):
        class Item:
            image = self.pictures[i]

        return Item()


def test_image_cache_is_exact_and_bounded() -> None:
    cat = PictureCatalogue(5)
    one_image = 3 * 32 * 32
    ctx = EvalContext(None, cat, None, torch.device("cpu"), image_size=32, cache_bytes=2 * one_image)
    for row in range(5):
        fresh = prepare_image(cat.pictures[row], 32)
        assert torch.equal(ctx.image(row), fresh)
        assert torch.equal(ctx.image(row), fresh)  # from the uint8 cache: bit-identical
    assert list(ctx._images) == [3, 4] and ctx._image_bytes == 2 * one_image


def test_task_parsing_and_row_draws() -> None:
    assert parse_tasks("all") == ("retrieval", "recognition", "generation")
    assert parse_tasks("generation,retrieval") == ("retrieval", "generation")
    with pytest.raises(ValueError, match="--task: unknown task 'ranking'"):
        parse_tasks("ranking")
    assert draw_rows(10, None, 0, 1) == list(range(10))
    assert draw_rows(10, 4, 0, 1) == draw_rows(10, 4, 0, 1) != draw_rows(10, 4, 1, 1)


def test_report_pictures() -> None:
    matrix = np.array([[5, 1, 0], [0, 3, 2], [1, 0, 0]])
    img = draw_confusion(matrix, ["Trousers", "Dress", "A very long sub-category name indeed"])
    assert img.size[0] == img.size[1] > 3 * 26
    big = draw_confusion(np.eye(100, dtype=int), [f"class {i}" for i in range(100)])
    assert big.size[0] < 1200
    uri = data_uri(torch.rand(3, 256, 256))
    assert uri.startswith("data:image/jpeg;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(thumb.size) == 112
