"""What a catalogue leaves out of a metric is counted and said when it opens: skipped rows (the
first few named), product ids on several rows, rows without a label; ``all`` is every split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from mvlt.data import open_catalogue
from mvlt.data.audit import audit


def test_duplicate_product_ids_are_counted_and_reported(files: Any, tmp_path: Path, caplog) -> None:
    rows = files.default_rows(6)
    rows[4]["product_id"] = rows[1]["product_id"]
    path = files.write_csv(tmp_path / "m.csv", rows)
    with caplog.at_level(logging.WARNING, logger="mvlt.data"):
        cat = open_catalogue(path)
    named = "row 2 (line 3), row 5 (line 6)"
    assert f"{path}: 2 rows share product_id 0000000001 ({named}); retrieval uses the first" in caplog.text
    record = audit(cat)
    assert record["duplicate_product_ids"] == 1 and record["duplicate_rows"] == 1
    assert record["duplicate_first"] == {"0000000001": 2} and record["items"] == 6


def test_rows_without_a_label_are_counted_and_reported(files: Any, tmp_path: Path, caplog) -> None:
    rows = files.default_rows(6)
    rows[0]["category"] = ""
    rows[2]["subcategory"] = rows[3]["subcategory"] = " "
    path = files.write_csv(tmp_path / "m.csv", rows)
    with caplog.at_level(logging.WARNING, logger="mvlt.data"):
        cat = open_catalogue(path)
    assert f"{path}: 1 row(s) have no category and 2 no subcategory" in caplog.text
    assert audit(cat)["unlabelled"] == {"category": 1, "subcategory": 2}


def test_skipped_rows_are_named(files: Any, tmp_path: Path) -> None:
    rows = files.default_rows(9)
    for i in (1, 3, 4, 5, 6, 7):
        rows[i]["text"] = ""
    cat = open_catalogue(files.write_csv(tmp_path / "m.csv", rows), skip_bad_rows=True)
    first = ["row 2 (line 3)", "row 4 (line 5)", "row 5 (line 6)", "row 6 (line 7)", "row 7 (line 8)"]
    assert cat.skip_report().endswith(f"6 empty_text ({'; '.join(first)}; ...)")
    record = audit(cat)
    assert record["skipped_rows"] == 6 and record["skipped_by_reason"] == {"empty_text": 6}
    assert record["skipped_first"] == first


@pytest.mark.parametrize("name", ["all", "ALL", "none", None])
def test_split_all_means_every_row(manifest: Path, name: str | None) -> None:
    cat = open_catalogue(manifest, split=name)
    assert len(cat) == 6 and cat.split is None
    assert len(open_catalogue("synthetic", split=name, num_products=20, image_size=16)) == 20
