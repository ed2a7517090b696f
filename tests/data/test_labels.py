from __future__ import annotations

from pathlib import Path

import pytest

from mvlt.data import LabelMaps, open_catalogue
from mvlt.masking import IGNORE_INDEX


def test_build_encode_and_unknown() -> None:
    maps = LabelMaps.build(["Tops", "Bottoms", "Tops", ""], ["Shirt", "Skirt", "Shirt"])
    assert maps.category_names == ["Bottoms", "Tops"]
    assert (maps.num_categories, maps.num_subcategories) == (2, 2)
    assert maps.encode("Tops", "Skirt") == (1, 1)
    assert maps.encode("Hats", "Cap") == (IGNORE_INDEX, IGNORE_INDEX)
    assert maps.encode_category("Hats") == IGNORE_INDEX
    assert maps.unknown["category"] == {"Hats": 2}
    assert maps.unknown["subcategory"] == {"Cap": 1}
    report = maps.unknown_report()
    assert report is not None and "'Hats' x2" in report and "'Cap' x1" in report
    assert maps.encode_category("") == IGNORE_INDEX and maps.unlabelled["category"] == 1
    with pytest.raises(KeyError, match="Hats"):
        maps.category_id("Hats")
    assert maps.category_name(1) == "Tops"


def test_save_load(tmp_path: Path) -> None:
    maps = LabelMaps(["Ä", "B"], ["x"])
    maps.save(tmp_path / "labels.json")
    again = LabelMaps.load(tmp_path / "labels.json")
    assert again == maps and again.category_names == ["Ä", "B"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match=r"bad\.json"):
        LabelMaps.load(tmp_path / "bad.json")


def test_from_training_catalogue(manifest: Path) -> None:
    train = open_catalogue(manifest, split="train")
    maps = LabelMaps.from_catalogue(train)
    assert maps.category_names == sorted(set(train.categories))
