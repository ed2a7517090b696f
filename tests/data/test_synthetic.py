from __future__ import annotations

import re
import time
from collections import defaultdict

import numpy as np
import pytest

from mvlt.data import SyntheticCatalogue, open_catalogue
from mvlt.data.synthetic import BACKGROUND, CATEGORIES, OUTLINE, PALETTE, SUBCATEGORIES

SIZE = 64


@pytest.fixture(scope="module")
def cat() -> SyntheticCatalogue:
    return SyntheticCatalogue(num_products=300, seed=3, image_size=SIZE)


def _nearest(pixels: np.ndarray, names: list[str], colours: np.ndarray) -> np.ndarray:
    d = ((pixels[:, None, :].astype(np.int32) - colours[None].astype(np.int32)) ** 2).sum(-1)
    return np.asarray(names)[d.argmin(1)]


def _colour_shares(pixels: np.ndarray) -> dict[str, float]:
    """Share of ``pixels`` (N x 3) by nearest palette colour."""
    names = list(PALETTE)
    labels = _nearest(pixels, names, np.asarray([PALETTE[n] for n in names]))
    values, counts = np.unique(labels, return_counts=True)
    return {v: c / len(labels) for v, c in zip(values.tolist(), counts.tolist())}


def test_fast_and_deterministic() -> None:
    start = time.process_time()  # CPU time: robust to other processes on a shared machine
    a = open_catalogue("synthetic", num_products=2000, seed=7, image_size=SIZE)
    assert time.process_time() - start < 2.0 and len(a) == 2000
    b = SyntheticCatalogue(num_products=2000, seed=7, image_size=SIZE)
    assert a.texts == b.texts and a.product_ids == b.product_ids and a.subcategories == b.subcategories
    for i in (0, 17, 1999):
        assert np.array_equal(np.asarray(a[i].image), np.asarray(b[i].image))
    c = SyntheticCatalogue(num_products=2000, seed=8, image_size=SIZE)
    assert c.texts != a.texts
    assert not np.array_equal(np.asarray(a[0].image), np.asarray(c[0].image)) or a.texts[0] != c.texts[0]


def test_taxonomy_ids_and_splits(cat: SyntheticCatalogue) -> None:
    assert set(cat.categories) == set(CATEGORIES) and set(cat.subcategories) <= set(SUBCATEGORIES)
    assert len(SUBCATEGORIES) == 21
    assert len(set(cat.product_ids)) == len(cat)  # every colour variant is its own product
    train, test = (
        SyntheticCatalogue(split=s, num_products=300, seed=3, image_size=SIZE) for s in ("train", "test")
    )
    assert len(train) + len(test) == len(cat) and 0.1 < len(test) / len(cat) < 0.35
    assert not set(train.groups) & set(test.groups)  # variants never straddle the split
    j = test.item_ids[0]  # an item draws the same image whatever split selects it
    assert (
        np.array_equal(np.asarray(test[0].image), np.asarray(cat[j].image)) and test.texts[0] == cat.texts[j]
    )
    assert cat[0].image.size == (SIZE, SIZE)
    with pytest.raises(ValueError, match="splits"):
        SyntheticCatalogue(split="validation")


def test_variants_share_description_except_colour(cat: SyntheticCatalogue) -> None:
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(cat.groups):
        by_group[g].append(i)
    multi = [v for v in by_group.values() if len(v) > 1]
    assert len(multi) > 20
    for members in multi:
        colours = {cat.attributes[i]["colour"] for i in members}
        assert len(colours) == len(members)  # distinct colours
        stripped = {re.sub(rf"\b(an? )?{cat.attributes[i]['colour']}\b", "#", cat.texts[i].lower(), count=1)
                    for i in members}  # fmt: skip
        assert len(stripped) == 1, [cat.texts[i] for i in members]


def test_texts_rarely_repeat_within_a_subcategory() -> None:
    cat = SyntheticCatalogue(num_products=2000, seed=0, image_size=SIZE)
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for text, sub, pid in zip(cat.texts, cat.subcategories, cat.product_ids):
        seen[(sub, text)].add(pid)
    shared = sum(len(p) for p in seen.values() if len(p) > 1)
    assert shared / len(cat) < 0.15


def test_text_names_the_drawn_attributes(cat: SyntheticCatalogue) -> None:
    for i in range(0, len(cat), 3):
        attrs, text = cat.attributes[i], cat.texts[i].lower()
        assert attrs["colour"] in text
        if attrs["pattern"] != "solid":
            assert attrs["pattern_colour"] in text
            assert {"stripes": "stripe", "dots": "dot", "checks": "check"}[attrs["pattern"]] in text
        for value in (
            v for k, v in attrs.items() if k in ("neckline", "fit", "shape", "top", "sole", "trim")
        ):
            assert {"slim": "slim-fit", "crew": "crew neck"}.get(value, value) in text
        img, body, trim = cat.draw(i)
        interior = body & ~trim & ~(np.asarray(img) == OUTLINE).all(-1)  # body without trim and outline
        shares = _colour_shares(np.asarray(img)[interior])
        dominant = max(shares, key=shares.__getitem__)
        assert dominant == attrs["colour"], (text, shares)
        if attrs["pattern"] == "solid":
            assert shares[dominant] > 0.95, (text, shares)
        else:
            assert shares[dominant] > 0.5 and 0.08 < shares.get(attrs["pattern_colour"], 0) < 0.5, (
                text,
                shares,
            )


def _garment_box(img: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(np.abs(img.astype(int) - np.asarray(BACKGROUND)).sum(-1) > 30)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_subtypes_change_the_silhouette() -> None:
    cat = SyntheticCatalogue(num_products=800, seed=1, image_size=SIZE)
    bottoms: dict[str, list[int]] = defaultdict(list)
    widths: dict[str, list[int]] = defaultdict(list)
    for i, sub in enumerate(cat.subcategories):
        if cat.categories[i] in ("dress", "skirt", "trousers", "t-shirt"):
            top, bottom, left, right = _garment_box(np.asarray(cat[i].image))
            bottoms[sub].append(bottom - top)
            widths[sub].append(right - left)
    mean = {k: float(np.mean(v)) for k, v in bottoms.items()}
    assert mean["mini dress"] + 4 < mean["midi dress"] < mean["maxi dress"] - 4
    assert mean["mini skirt"] + 4 < mean["midi skirt"] < mean["maxi skirt"] - 4
    assert mean["shorts"] + 4 < mean["cropped trousers"] < mean["full-length trousers"] - 4
    assert np.mean(widths["tank top"]) + 8 < np.mean(widths["long-sleeve t-shirt"])
