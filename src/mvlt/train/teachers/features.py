"""Teacher features of a catalogue, computed once and cached on disk.

A teacher is frozen, so its features of a catalogue row never change: they are computed in one
pass (with a progress bar) and kept in a ``safetensors`` file named by a hash of what they depend
on: the teacher, its input settings, and each row's text and image file (path, size,
modification time). Any change to one of those computes them again; the file is written
atomically, so an interrupted pass leaves nothing that is read later.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ...data.batches import encode_texts
from ...data.images import prepare_image
from ...data.tokenizer import bert_tokenizer
from ...fileio import atomic_write
from ...runtime import cpu_has_native_bf16
from .models import (
    IMAGE_TEACHER,
    IMAGE_TEACHER_SIZE,
    TEXT_TEACHER,
    ImageTeacher,
    TextTeacher,
    check_vocabulary,
)

FEATURES_VERSION = 1
TEXT_TEACHER_MAX_TOKENS = 128


def default_cache_dir() -> Path:
    """``$MVLT_CACHE_DIR/teachers`` or ``~/.cache/mvlt/teachers`` (never the data folder, which
    may be read-only)."""
    root = os.environ.get("MVLT_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "mvlt") / "teachers"


def catalogue_fingerprint(catalogue: Any) -> str:
    """A hash of every row's text and image file (path, size, modification time) in order."""
    digest = hashlib.sha256(repr(catalogue).encode())
    paths = getattr(catalogue, "image_paths", None)
    for i, text in enumerate(catalogue.texts):
        digest.update(f"\x00{catalogue.product_ids[i]}\x00{text}".encode())
        if paths is not None:
            stat = Path(paths[i]).stat()
            digest.update(f"\x00{paths[i]}\x00{stat.st_size}\x00{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def teacher_features(
    catalogue: Any,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """``{"image": N x 1280, "text": N x 384}`` fp32 teacher features of every catalogue row."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    settings = {
        "version": FEATURES_VERSION,
        "bf16": bool(cpu_has_native_bf16()),
        "image": [IMAGE_TEACHER, IMAGE_TEACHER_SIZE, "pad"],
        "text": [TEXT_TEACHER, TEXT_TEACHER_MAX_TOKENS, "mean"],
    }
    key = hashlib.sha256(json.dumps(settings).encode() + catalogue_fingerprint(catalogue).encode())
    path = cache / f"features-{key.hexdigest()[:24]}.safetensors"
    if path.is_file():
        try:
            features = load_file(str(path))
            if all(len(v) == len(catalogue) for v in features.values()):
                return features
        except Exception:  # a file damaged outside this code: compute it again
            pass
    features = {
        "image": image_features(catalogue, batch_size, progress, device),
        "text": text_features(catalogue.texts, batch_size, progress, device),
    }
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(features, str(tmp), metadata={"settings": json.dumps(settings)}))
    return features


def image_features(
    catalogue: Any, batch_size: int = 64, progress: bool = True, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """EfficientNet-Lite0 pooled features of every row's image, at 224 px, padded to square."""
    teacher = ImageTeacher().to(device, memory_format=torch.channels_last)

    def batch(rows: range) -> torch.Tensor:
        pixels = [prepare_image(catalogue.load_image(i), IMAGE_TEACHER_SIZE, "pad") for i in rows]
        with _fast_autocast(torch.device(device)):
            return teacher(torch.stack(pixels).to(device).contiguous(memory_format=torch.channels_last))

    return _batched(len(catalogue), batch_size, batch, "teacher image features", progress)


def text_features(
    texts: list[str], batch_size: int = 64, progress: bool = True, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """all-MiniLM-L6-v2 mean-pooled features of each text (the BERT-uncased tokenizer, 128 tokens)."""
    teacher = TextTeacher().to(device)
    tokenizer = bert_tokenizer(max_length=TEXT_TEACHER_MAX_TOKENS)
    check_vocabulary(teacher, [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)])
    # Sorted by length, so a batch pads to about its own length.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))

    def batch(rows: range) -> torch.Tensor:
        encoded = encode_texts(tokenizer, [texts[order[i]] for i in rows])
        with _fast_autocast(torch.device(device)):
            return teacher(encoded["input_ids"].to(device), encoded["attention_mask"].to(device))

    sorted_features = _batched(len(texts), batch_size, batch, "teacher text features", progress)
    features = torch.empty_like(sorted_features)
    features[torch.tensor(order, dtype=torch.long)] = sorted_features
    return features


def _fast_autocast(device: torch.device) -> Any:
    """bf16 where it is native (a CPU with AVX-512 BF16 / AMX: 2x the fp32 rate here; CUDA), else
    fp32: features are cached once, so their precision is a one-off choice of speed."""
    native = bool(cpu_has_native_bf16()) if device.type == "cpu" else torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=native)


def _batched(
    n: int, batch_size: int, run: Callable[[range], torch.Tensor], label: str, progress: bool
) -> torch.Tensor:
    out = []
    with tqdm(total=n, desc=label, unit="item", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            rows = range(start, min(n, start + batch_size))
            with torch.inference_mode():
                out.append(run(rows).float().cpu())
            bar.update(len(rows))
    return torch.cat(out) if out else torch.zeros(0)
