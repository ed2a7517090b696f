"""``mvlt index`` and ``mvlt search``: output, --json, --add, and one-line errors naming the argument."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mvlt.cli import main
from mvlt.search.cli import is_loopback

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


def error_of(argv: list[str], capsys, code: int) -> str:
    """The one error line of a failing command, checking its exit code (mvlt.exits: 1 = what the
    command points at is bad, 2 = the command line itself is)."""
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_errors_are_one_line_and_name_the_argument(
    checkpoint: Path, catalogue: Path, index_dir: Path, tmp_path: Path, capsys
) -> None:
    ckpt, data, out = str(checkpoint), str(catalogue), str(tmp_path / "out")
    index = ["search", "--index", str(index_dir)]
    bad_photo = tmp_path / "bad.png"
    bad_photo.write_bytes(b"not a picture")
    other = write_checkpoint(tmp_path / "other", seed=3)
    elsewhere = write_catalogue(tmp_path / "elsewhere", products=4)
    cases = [
        (["index", "--checkpoint", str(tmp_path / "x"), "--data", data, "--out", out], 1, "--checkpoint"),
        (["index", "--data", data, "--out", out], 2, "--checkpoint is required"),
        (["index", "--checkpoint", ckpt, "--data", str(tmp_path / "no.csv"), "--out", out], 1, "--data"),
        (["search", "--index", str(tmp_path / "none"), "coat"], 1, "--index"),
        ([*index], 2, "not both"),
        ([*index, "coat", "--image", str(bad_photo)], 2, "not both"),
        ([*index, "--image", str(tmp_path / "a.png")], 1, "--image"),
        ([*index, "--image", str(bad_photo)], 1, "bad.png"),
        ([*index, "coat", "--over", "texts", "--rerank", "3"], 2, "rerank scores"),
        (
            [*index, "coat", "--checkpoint", str(other)],
            1,
            f"built by another checkpoint: {checkpoint.resolve()}",
        ),
        (["index", "--add", "--data", str(elsewhere), "--out", str(index_dir)], 2, str(elsewhere.parent)),
    ]
    for argv, code, fragment in cases:
        err = error_of(argv, capsys, code)
        assert err.startswith(f"mvlt {argv[0]}: error: ") and fragment in err, (argv, err)
    assert not (tmp_path / "out").exists()


def test_python_m_mvlt_lists_the_search_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "mvlt", "--help"], capture_output=True, text=True, check=True)
    assert all(command in out.stdout for command in ("index", "search", "serve"))


def argparse_error(argv: list[str], capsys) -> str:
    """The error line argparse prints (after its usage lines) for a flag value of the wrong kind."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_serve_checks_every_flag_before_loading_the_index(tmp_path: Path, capsys) -> None:
    missing = ["serve", "--index", str(tmp_path / "no-index")]  # reached only if the flags pass
    for flag, value, words in [
        ("--port", "70000", "from 0 to 65535"),
        ("--port", "-1", "from 0 to 65535"),
        ("--max-upload-mb", "nan", "positive finite"),
        ("--max-upload-mb", "-5", "positive finite"),
        ("--max-upload-mb", "lots", "positive number"),
        ("--upload-timeout", "inf", "positive finite"),
        ("--rerank", "101", "between 0 and 100"),
    ]:
        err = argparse_error([*missing, flag, value], capsys)
        assert err.startswith(f"mvlt serve: error: argument {flag}: ") and words in err, err
    err = argparse_error(["search", "--index", str(tmp_path), "coat", "--rerank", "100000"], capsys)
    assert err == "mvlt search: error: argument --rerank: must be between 0 and 100, got 100000"
    key_file = tmp_path / "key.txt"
    key_file.write_text("\n")
    cases = [
        (["--host", "0.0.0.0"], 2, "--host 0.0.0.0 can be reached from other machines: give --api-key"),
        (["--host", "192.168.1.5"], 2, "--api-key-file FILE"),
        (["--host", "::", "--api-key", "short"], 2, "--api-key: the key must be at least 16"),
        (["--api-key-file", str(tmp_path / "none.txt")], 1, "--api-key-file"),
        (["--api-key-file", str(key_file)], 2, "the first line is empty"),
        (["--cors-origin", "shop.example"], 2, "--cors-origin shop.example"),
    ]
    for extra, code, words in cases:
        err = error_of([*missing, *extra], capsys, code)
        assert err.startswith("mvlt serve: error: ") and words in err, err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = error_of([*missing, "--port", str(port)], capsys, 1)
    assert err == f"mvlt serve: error: port {port} on 127.0.0.1 is in use"


def test_only_loopback_hosts_count_as_private() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.evil"]))


def test_mvlt_serve_serves_with_a_key_and_logs_each_request(index_dir: Path) -> None:
    pytest.importorskip("uvicorn")
    key = "k" * 20
    argv = [sys.executable, "-m", "mvlt", "serve", "--index", str(index_dir), "--port", "0", "--api-key", key]
    argv += ["--precision", "fp32", "--threads", "1"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # printed once the index is loaded and the port taken
        assert line.startswith("serving 36 products from") and "http://127.0.0.1:" in line, line
        url = line.split(" at ")[-1].strip()
        with urllib.request.urlopen(url + "healthz", timeout=20) as response:
            assert json.loads(response.read())["api_key"] is True
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "search?q=coat", timeout=20)
        assert refused.value.code == 401
        request = urllib.request.Request(url + "search?q=coat&k=2&rerank=0", headers={"X-API-Key": key})
        with urllib.request.urlopen(request, timeout=20) as response:
            assert len(json.loads(response.read())["results"]) == 2
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    access = [line for line in err.splitlines() if " ms id=" in line]
    assert [line.split()[:3] for line in access] == [
        ["GET", "/healthz", "200"],
        ["GET", "/search?q", "401"],
        ["GET", "/search?q&k&rerank", "200"],
    ]
    assert key not in err and "Traceback" not in err
