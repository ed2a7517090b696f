"""The exported ITC encoders (:mod:`mvlt.search.export`) in onnxruntime, shaped like the model.

:class:`OnnxEncoders` has the model's ``encode_images(pixels)`` and ``encode_texts(ids, mask)``
(tensors in, ``B x D`` float32 tensors out), so the index embeds queries and catalogues with it
through the same code as with PyTorch (``--runtime onnx``). It refuses an export made from
another checkpoint than the index's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exits import UsageError
from ..fileio import read_json

FORMAT = "mvlt-onnx-export"
VERSION = 1
MANIFEST = "export.json"
VARIANTS = ("fp32", "int8")
GRAPHS = {"image": "image_encoder", "text": "text_encoder"}
EXTRA = "pip install 'mvlt[onnx]'"


def require_onnx(*modules: str) -> None:
    """Import the optional ``modules`` (default onnxruntime), or say which extra installs them."""
    import importlib

    for name in modules or ("onnxruntime",):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"ONNX export and --runtime onnx need {name}: {EXTRA} ({err})") from err


def graph_file(kind: str, variant: str) -> str:
    """``image_encoder.onnx``, ``text_encoder.int8.onnx``, ..."""
    return f"{GRAPHS[kind]}{'' if variant == 'fp32' else '.' + variant}.onnx"


RUNTIMES = ("torch", "onnx", "onnx-int8")
"""``--runtime``: PyTorch, the fp32 ONNX graphs, or their int8 (dynamically quantised) variant."""


class OnnxEncoders:
    """Image and text ITC encoders as onnxruntime sessions (thread-safe: ``run`` may be called
    from several threads at once)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], variant: str, threads: int | None) -> None:
        require_onnx()
        import onnxruntime as ort

        self.folder, self.manifest, self.variant = folder, manifest, variant
        self.runtime = "onnx" if variant == "fp32" else f"onnx-{variant}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        self.sessions = {}
        for kind, graph in GRAPHS.items():
            files = manifest["graphs"][graph]["files"]
            if variant not in files:
                raise ValueError(f"the ONNX export {folder} has no {variant} {graph} (re-export with int8)")
            path = folder / files[variant]
            if not path.is_file():
                raise FileNotFoundError(f"damaged ONNX export: {path} is missing")
            self.sessions[kind] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        variant: str = "fp32",
        sha256: str | None = None,
        threads: int | None = None,
    ) -> OnnxEncoders:
        """Open an ``mvlt export`` folder; ``sha256``: the checkpoint hash it must have been made from."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown ONNX variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        folder = Path(folder)
        missing = f"--onnx {folder}: no {MANIFEST} (make one with `mvlt export --format onnx --out {folder}`)"
        manifest = read_json(folder / MANIFEST, missing=missing)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"{folder / MANIFEST} is not an mvlt ONNX export (format {FORMAT!r})")
        made_from = manifest["checkpoint"]["sha256"]
        if sha256 is not None and made_from != sha256:
            raise ValueError(
                f"the ONNX export {folder} was made from another checkpoint "
                f"({manifest['checkpoint']['path']}, sha256 {made_from[:16]}) than the index's "
                f"(sha256 {sha256[:16]}); re-export it"
            )
        return cls(folder, manifest, variant, threads)

    def __repr__(self) -> str:
        return f"OnnxEncoders({str(self.folder)!r}, {self.variant})"

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.detach().to("cpu", torch.float32).numpy()
        return torch.from_numpy(self.sessions["image"].run(None, {"pixels": pixels})[0])

    def encode_texts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        ids = input_ids.detach().to("cpu", torch.int64).numpy()
        mask = (
            np.ones_like(ids)
            if attention_mask is None
            else attention_mask.detach().to("cpu", torch.int64).numpy()
        )
        return torch.from_numpy(
            self.sessions["text"].run(None, {"input_ids": ids, "attention_mask": mask})[0]
        )


def open_encoders(
    runtime: str, onnx: str | Path | None, sha256: str, threads: int | None = None
) -> OnnxEncoders | None:
    """The encoders ``--runtime`` asks for: None for PyTorch (the model itself), else the export."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return None
    if onnx is None:
        raise UsageError(
            f"--runtime {runtime} needs --onnx DIR, made by `mvlt export --checkpoint CKPT --format onnx "
            f"--out DIR` ({EXTRA})"
        )
    return OnnxEncoders.load(
        onnx, variant="int8" if runtime == "onnx-int8" else "fp32", sha256=sha256, threads=threads
    )
