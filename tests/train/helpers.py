"""Helpers of the training tests: a tiny run (``mvlt_nano``, 64 px, a 60-product synthetic
catalogue, a 200-token vocabulary) that trains in well under a second per step on one thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from mvlt.train import TrainConfig

NUM_PRODUCTS = 60  # 53 training items: 6 steps of 8 per epoch, so short runs cross epochs
IMAGE_SIZE = 64


def tiny_config(out: Path, tokenizer: Path | None, **changes: Any) -> TrainConfig:
    """A fast fp32 pre-training config; ``changes`` override any field."""
    values: dict[str, Any] = {
        "model": "mvlt_nano",
        "data": "synthetic",
        "data_options": {"num_products": NUM_PRODUCTS},
        "tokenizer": str(tokenizer) if tokenizer else None,
        "image_size": IMAGE_SIZE,
        "batch_size": 8,
        "steps": 4,
        "lr": 1e-3,
        "precision": "fp32",
        "threads": 1,
        "progress": False,
        "tensorboard": False,
        "out": str(out),
    }
    values.update(changes)
    return TrainConfig(**values)


def tiny_args(out: Path, tokenizer: Path, *extra: str) -> list[str]:
    """The command-line twin of :func:`tiny_config`."""
    return [
        "--model", "mvlt_nano", "--data", "synthetic", "--set", f"data_options.num_products={NUM_PRODUCTS}",
        "--tokenizer", str(tokenizer), "--image-size", str(IMAGE_SIZE), "--batch-size", "8",
        "--lr", "1e-3", "--precision", "fp32", "--threads", "1", "--no-progress", "--no-tensorboard",
        "--out", str(out), *extra,
    ]  # fmt: skip


def synthetic_manifest(folder: Path, num_products: int = NUM_PRODUCTS) -> Path:
    """The synthetic catalogue (drawn at ``IMAGE_SIZE``) written as a CSV manifest with PNG images:
    a real-photo catalogue whose files a test can break."""
    from mvlt.data.sources import open_catalogue

    from ..manifests import write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for split in ("train", "test"):
        catalogue = open_catalogue("synthetic", split=split, num_products=num_products, image_size=IMAGE_SIZE)
        for item in catalogue:
            image = f"images/{item.product_id}.png"
            (folder / "images").mkdir(exist_ok=True)
            item.image.save(folder / image)
            labels = {"category": item.category, "subcategory": item.subcategory}
            rows.append({"image": image, "text": item.text, **labels, "product_id": item.product_id})
            rows[-1]["split"] = split
    path = folder / "metadata.csv"
    write_manifest(path, rows)
    return path


def stopped_and_resumed(monkeypatch: Any, config: Any, stop_at: int) -> Path:
    """Train ``config``, stopped by a SIGTERM during step ``stop_at``, then resumed to its end;
    the output folder (for :func:`same_weights` against an uninterrupted run)."""
    from mvlt.train import train

    with monkeypatch.context() as patch:
        interrupt_at(patch, stop_at)
        stopped = train(config)
    assert stopped.interrupted and stopped.steps < config.steps
    assert train(config, resume=True).steps == config.steps
    return Path(config.out)


def interrupt_at(monkeypatch: Any, step: int) -> None:
    """Send this process a real SIGTERM during training step ``step`` (one forward pass a step)."""
    import signal

    import mvlt

    calls = {"n": 0}
    original = mvlt.MVLT.forward_loss

    def forward_loss(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mvlt.MVLT, "forward_loss", forward_loss)


def same_weights(a: Path, b: Path) -> bool:
    """Whether two runs ended with bit-identical weights."""
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    """The test's environment for child processes: one thread each, the package importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # keep gloo on loopback
    return env


def run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m mvlt.train.cli ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "mvlt.train.cli", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
