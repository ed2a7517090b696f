"""``mvlt index`` and ``mvlt search``: output, --json, --add, and one-line errors naming the argument."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mvlt.cli import main

from .conftest import write_catalogue, write_checkpoint


def test_index_then_search_text_and_photo(checkpoint: Path, catalogue: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "index"
    assert (
        main(
            [
                "index",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(catalogue),
                "--out",
                str(out),
                "--limit",
                "20",
                "--precision",
                "fp32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "indexed 20 products (20 in all)" in capsys.readouterr().out
    assert main(["search", "--index", str(out), "a red shirt", "-k", "3", "--precision", "fp32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["rank", "score", "product"] and len(lines) == 4
    photo = catalogue.parent / "images" / f"{_product(catalogue, 2)}.png"
    argv = [
        "search",
        "--index",
        str(out),
        "--image",
        str(photo),
        "--over",
        "images",
        "--json",
        "--precision",
        "fp32",
    ]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["image"] == str(photo) and payload["results"][0]["product_id"] == _product(catalogue, 2)
    assert payload["results"][0]["cosine"] == pytest.approx(1.0, abs=1e-4) and len(payload["results"]) == 10
    assert main(["search", "--index", str(out), "blue skirt", "--rerank", "5", "-k", "6", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["stage"] for r in results] == ["rerank"] * 5 + ["first"]
    assert main(["index", "--add", "--data", str(catalogue), "--out", str(out), "--no-progress"]) == 0
    assert f"indexed {36 - 20} products (36 in all)" in capsys.readouterr().out


def _product(catalogue: Path, row: int) -> str:
    return (
        catalogue.read_text().splitlines()[row + 1].split(",")[0].removeprefix("images/").removesuffix(".png")
    )


def error_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_errors_are_one_line_and_name_the_argument(
    checkpoint: Path, catalogue: Path, index_dir: Path, tmp_path: Path, capsys
) -> None:
    index = ["--index", str(index_dir)]
    assert "--checkpoint" in error_of(
        [
            "index",
            "--checkpoint",
            str(tmp_path / "x"),
            "--data",
            str(catalogue),
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    err = error_of(
        ["index", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "no.csv"), "--out", "o"], capsys
    )
    assert err.startswith("mvlt index: error: --data") and "no.csv" in err
    assert "--index" in error_of(["search", "--index", str(tmp_path / "none"), "coat"], capsys)
    assert "not both" in error_of(["search", *index], capsys)
    assert "not both" in error_of(["search", *index, "coat", "--image", str(tmp_path / "a.png")], capsys)
    assert "--image" in error_of(["search", *index, "--image", str(tmp_path / "a.png")], capsys)
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    assert "bad.png" in error_of(["search", *index, "--image", str(tmp_path / "bad.png")], capsys)
    assert "rerank scores" in error_of(["search", *index, "coat", "--over", "texts", "--rerank", "3"], capsys)
    other = write_checkpoint(tmp_path / "other", seed=3)
    err = error_of(["search", *index, "coat", "--checkpoint", str(other)], capsys)
    assert "built by another checkpoint" in err and str(other) in err
    shop = write_catalogue(tmp_path / "elsewhere", products=4)
    err = error_of(
        ["index", "--add", "--checkpoint", str(checkpoint), "--data", str(shop), "--out", str(index_dir)],
        capsys,
    )
    assert "cannot add" in err and str(shop.parent) in err


def test_python_m_mvlt_lists_the_search_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "mvlt", "--help"], capture_output=True, text=True, check=True)
    assert all(command in out.stdout for command in ("index", "search", "serve"))
