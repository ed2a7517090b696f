"""``mvlt export --format onnx``: the two ITC encoders of a checkpoint as ONNX graphs.

The first stage of the search needs only ``model.encode_images`` and ``model.encode_texts`` (unit-
length ``contrastive_dim`` embeddings); exported, they run in onnxruntime without PyTorch, at any
batch size (and any text length up to ``max_text_len``). The folder holds what a runtime needs:

::

    OUT/
      export.json              format, the checkpoint (path + content hash, as an index records it),
                               the graphs and their inputs, pixel and text conventions, parity figures
      image_encoder.onnx       pixels (B x 3 x S x S float32 RGB in [0, 1]) -> image_embedding (B x D)
      text_encoder.onnx        input_ids, attention_mask (B x L int64) -> text_embedding (B x D)
      *.int8.onnx              the same, weights dynamically quantised to int8 (onnxruntime)
      vocab.txt, tokenizer_config.json   the checkpoint's tokenizer

Pixel normalisation (the config's mean and std) is inside the image graph, so a runtime feeds the
prepared image as :func:`mvlt.data.images.prepare_image` makes it. The ITM cross-encoder is not
exported: the re-ranking stage keeps the PyTorch model (see docs/SEARCH.md).

The export refuses to finish unless the fp32 graphs match PyTorch within :data:`PARITY_TOLERANCE`
on fixed inputs, and records the differences (int8's too) in ``export.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_directory
from .index import _load_model
from .onnx_encoders import (
    FORMAT,
    GRAPHS,
    MANIFEST,
    VARIANTS,
    VERSION,
    graph_file,
    require_onnx,
)
from .store import checkpoint_sha256

TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json")
PARITY_TOLERANCE = 1e-4
"""Largest |difference| allowed between an fp32 graph's embeddings and PyTorch's."""


class _ImageEncoder(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_images(pixels)


class _TextEncoder(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_texts(input_ids, attention_mask)


def parity_inputs(config: Any, seed: int = 0) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """Fixed inputs at two batch sizes: images in [0, 1]; texts of several lengths, some padded."""
    g = torch.Generator().manual_seed(seed)
    size, length = int(config.image_size), int(config.max_text_len)
    images = [(torch.rand(b, 3, size, size, generator=g),) for b in (1, 3)]
    texts = []
    for b, n in ((1, min(7, length)), (3, length)):
        ids = torch.randint(1000, int(config.vocab_size), (b, n), generator=g)
        mask = torch.ones_like(ids)
        mask[-1, max(2, n // 2) :] = 0  # the last text padded past its middle
        texts.append((ids, mask))
    return {"image": images, "text": texts}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's, optimiser's and quantiser's INFO chatter (hundreds of lines) off, warnings too."""
    names = ("", "torch.onnx", "torch.export", "onnxscript", "onnx_ir", "onnxruntime")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_graph(
    module: torch.nn.Module, kind: str, example: tuple[torch.Tensor, ...], path: Path, config: Any
) -> None:
    """One encoder through the dynamo exporter (the TorchScript one bakes the batch size into the
    reshapes of the patch embedding), dynamic batch and text length, weights inside the file."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    if kind == "image":
        names, shapes = ["pixels"], ({0: batch},)
    else:
        length = torch.export.Dim("length", min=2, max=int(config.max_text_len))
        names, shapes = ["input_ids", "attention_mask"], ({0: batch, 1: length}, {0: batch, 1: length})
    with _quiet():
        program = torch.onnx.export(
            module,
            example,
            None,
            input_names=names,
            output_names=[f"{kind}_embedding"],  # "embedding" collides with a node of the text graph
            dynamic_shapes=shapes,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def _run(session: Any, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]


def export_onnx(checkpoint: str | Path, out: str | Path, *, quantize: bool = True) -> dict[str, Any]:
    """Export ``checkpoint``'s image and text encoders to ``out`` (atomically) and return the
    manifest. Raises ``ValueError`` when an fp32 graph's output differs from PyTorch's by more
    than :data:`PARITY_TOLERANCE`: such an export is not written."""
    require_onnx("onnx", "onnxruntime")
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    checkpoint, out = Path(checkpoint), Path(out)
    start = time.perf_counter()
    model = _load_model(checkpoint, torch.device("cpu")).float()
    config = model.config
    inputs = parity_inputs(config)
    modules = {"image": _ImageEncoder(model).eval(), "text": _TextEncoder(model).eval()}
    variants = VARIANTS if quantize else ("fp32",)
    parity: dict[str, dict[str, float]] = {v: {} for v in variants}
    with atomic_directory(out) as tmp:
        for kind, module in modules.items():
            fp32 = tmp / graph_file(kind, "fp32")
            _export_graph(module, kind, inputs[kind][-1], fp32, config)
            if quantize:
                with _quiet():
                    quantize_dynamic(
                        str(fp32), str(tmp / graph_file(kind, "int8")), weight_type=QuantType.QInt8
                    )
            for variant in variants:
                session = ort.InferenceSession(
                    str(tmp / graph_file(kind, variant)), providers=["CPUExecutionProvider"]
                )
                worst = 0.0
                for example in inputs[kind]:
                    with torch.inference_mode():
                        expected = module(*example).numpy()
                    worst = max(worst, float(np.abs(_run(session, example) - expected).max()))
                parity[variant][kind] = worst
            if parity["fp32"][kind] > PARITY_TOLERANCE:
                raise ValueError(
                    f"the exported {GRAPHS[kind]} differs from PyTorch by {parity['fp32'][kind]:.2e} "
                    f"(tolerance {PARITY_TOLERANCE:g}); nothing was written to {out}"
                )
        for name in TOKENIZER_FILES:
            shutil.copy2(checkpoint / name, tmp / name)
        manifest = _manifest(
            checkpoint, model, parity, variants, onnx.load(str(tmp / graph_file("text", "fp32")))
        )
        manifest["seconds"] = round(time.perf_counter() - start, 1)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _manifest(
    checkpoint: Path, model: Any, parity: dict[str, dict[str, float]], variants: tuple[str, ...], graph: Any
) -> dict[str, Any]:
    import onnxruntime as ort

    config, tokenizer = model.config, model.tokenizer
    size = int(config.image_size)
    return {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint": {"path": str(checkpoint.resolve()), "sha256": checkpoint_sha256(checkpoint)},
        "graphs": {
            GRAPHS["image"]: {
                "files": {v: graph_file("image", v) for v in variants},
                "inputs": {"pixels": ["batch", 3, size, size]},
                "outputs": {"image_embedding": ["batch", int(model.embedding_dim)]},
            },
            GRAPHS["text"]: {
                "files": {v: graph_file("text", v) for v in variants},
                "inputs": {"input_ids": ["batch", "length"], "attention_mask": ["batch", "length"]},
                "outputs": {"text_embedding": ["batch", int(model.embedding_dim)]},
            },
        },
        "image": {
            "size": size,
            "layout": "B x 3 x H x W, float32, RGB, values in [0, 1]",
            "normalisation": {
                "mean": list(config.pixel_mean),
                "std": list(config.pixel_std),
                "in_graph": True,
            },
            "prepare": "mvlt.data.images.prepare_image (the index's embedding.resize: pad or crop)",
        },
        "text": {
            "max_length": int(config.max_text_len),
            "tokenizer": list(TOKENIZER_FILES),
            "cls_id": int(tokenizer.cls_id),
            "sep_id": int(tokenizer.sep_id),
            "pad_id": int(config.pad_token_id),
            "layout": "[CLS] ... [SEP], int64; attention_mask 1 for tokens, 0 for [PAD]",
        },
        "embedding": {
            "dim": int(model.embedding_dim),
            "unit_length": True,
            "itc_temperature": float(model.itc_head.clamped_temperature().detach()),
        },
        "parity_max_abs_diff": parity,
        "parity_tolerance": PARITY_TOLERANCE,
        "opset": int(max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)),
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
