"""``mvlt export --format onnx`` and ``--runtime onnx``: the exported encoders match PyTorch on fixed
inputs at several batch sizes and text lengths, an index searched through them returns the same
products, and the runtime refuses another checkpoint's export or a missing onnxruntime by name."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mvlt
from mvlt.cli import main
from mvlt.search import CatalogueIndex, checkpoint_sha256

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from mvlt.search.export import PARITY_TOLERANCE, parity_inputs
from mvlt.search.onnx_encoders import OnnxEncoders, require_onnx

QUERIES = ["a blue skirt", "black leather boots with a white sole", "striped t-shirt", "dress"]


@pytest.fixture(scope="module")
def onnx_dir(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "export"
    argv = ["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_export_writes_graphs_tokenizer_and_manifest(onnx_dir: Path, checkpoint: Path) -> None:
    manifest = json.loads((onnx_dir / "export.json").read_text())
    assert manifest["checkpoint"]["sha256"] == checkpoint_sha256(checkpoint)
    for name in ("image_encoder", "text_encoder"):
        assert set(manifest["graphs"][name]["files"]) == {"fp32", "int8"}
        for file in manifest["graphs"][name]["files"].values():
            assert (onnx_dir / file).is_file()
    assert (onnx_dir / "vocab.txt").read_bytes() == (checkpoint / "vocab.txt").read_bytes()
    assert manifest["image"]["size"] == 32 and manifest["image"]["normalisation"]["in_graph"]
    assert manifest["text"]["max_length"] == 48 and manifest["embedding"]["dim"] == 32
    assert max(manifest["parity_max_abs_diff"]["fp32"].values()) <= PARITY_TOLERANCE
    assert not list(onnx_dir.parent.glob(".*tmp*"))  # written atomically, nothing left behind


def test_fp32_graphs_match_pytorch_at_any_batch_and_length(onnx_dir: Path, checkpoint: Path) -> None:
    model = mvlt.MVLT.from_pretrained(checkpoint).eval()
    encoders = OnnxEncoders.load(onnx_dir)
    inputs = parity_inputs(model.config, seed=7)  # not the inputs the export checked itself with
    inputs["image"].append((torch.rand(6, 3, 32, 32),))
    ids = torch.randint(1000, 30000, (5, 3))
    inputs["text"].append((ids, torch.ones_like(ids)))
    with torch.inference_mode():
        for (pixels,) in inputs["image"]:
            got, expected = encoders.encode_images(pixels), model.encode_images(pixels)
            assert got.shape == expected.shape and (got - expected).abs().max() <= PARITY_TOLERANCE
        for ids, mask in inputs["text"]:
            got, expected = encoders.encode_texts(ids, mask), model.encode_texts(ids, mask)
            assert got.shape == expected.shape and (got - expected).abs().max() <= PARITY_TOLERANCE
    int8 = OnnxEncoders.load(onnx_dir, variant="int8")
    pixels = inputs["image"][-1][0]
    cosine = (int8.encode_images(pixels) * model.encode_images(pixels).detach()).sum(1)
    assert cosine.min() > 0.9  # quantised, not equal; recall on H&M is measured in benchmarks/


def test_onnx_runtime_searches_like_pytorch(index_dir: Path, index: CatalogueIndex, onnx_dir: Path) -> None:
    onnx = CatalogueIndex.load(index_dir, precision="fp32", runtime="onnx", onnx=onnx_dir)
    assert onnx.runtime == "onnx" and "runtime='onnx'" in repr(onnx)
    for query in QUERIES:
        expected = [h.product_id for h in index.search(query, k=10)]
        assert [h.product_id for h in onnx.search(query, k=10)] == expected
    photo = index.image_path(5)
    assert [h.row for h in onnx.search(image=photo, k=5)] == [h.row for h in index.search(image=photo, k=5)]
    reranked = onnx.search(QUERIES[0], k=5, rerank=3)  # re-ranking stays in PyTorch
    assert [h.row for h in reranked] == [h.row for h in index.search(QUERIES[0], k=5, rerank=3)]


def test_index_built_with_onnx_matches_and_records_its_runtime(
    checkpoint: Path, catalogue: Path, index: CatalogueIndex, onnx_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "index"
    argv = ["index", "--checkpoint", str(checkpoint), "--data", str(catalogue), "--out", str(out)]
    assert main([*argv, "--runtime", "onnx", "--onnx", str(onnx_dir), "--no-progress"]) == 0
    built = CatalogueIndex.load(out, precision="fp32")
    assert built.manifest["builds"][-1]["runtime"] == "onnx"
    assert np.abs(built.embeddings["images"] - index.embeddings["images"]).max() <= PARITY_TOLERANCE
    assert np.abs(built.embeddings["texts"] - index.embeddings["texts"]).max() <= PARITY_TOLERANCE


def test_refuses_another_checkpoints_export_and_bad_flags(
    onnx_dir: Path, index_dir: Path, tmp_path: Path, capsys
) -> None:
    other = tmp_path / "other"
    shutil.copytree(onnx_dir, other)
    manifest = json.loads((other / "export.json").read_text())
    manifest["checkpoint"]["sha256"] = "0" * 64
    (other / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="made from another checkpoint"):
        CatalogueIndex.load(index_dir, runtime="onnx", onnx=other)
    assert main(["search", "--index", str(index_dir), "coat", "--runtime", "onnx", "--onnx", str(other)]) == 1
    assert "made from another checkpoint" in capsys.readouterr().err
    assert main(["search", "--index", str(index_dir), "coat", "--runtime", "onnx"]) == 2
    assert "--runtime onnx needs --onnx DIR" in capsys.readouterr().err
    assert main(["search", "--index", str(index_dir), "coat", "--onnx", str(onnx_dir)]) == 2
    assert (
        main(["search", "--index", str(index_dir), "coat", "--runtime", "onnx", "--onnx", str(tmp_path)]) == 1
    )
    assert "no export.json" in capsys.readouterr().err


def test_missing_onnxruntime_names_the_extra(
    index_dir: Path, onnx_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ImportError, match=r"mvlt\[onnx\]"):
        require_onnx()
    argv = ["serve", "--index", str(index_dir), "--port", "0", "--runtime", "onnx", "--onnx", str(onnx_dir)]
    assert main(argv) == 1
    assert "pip install 'mvlt[onnx]'" in capsys.readouterr().err


def test_onnx_benchmark_reports_recall_agreement_and_latency(
    checkpoint: Path, catalogue: Path, onnx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    monkeypatch.delitem(sys.modules, "onnx_runtime", raising=False)
    import onnx_runtime

    argv = [
        "--checkpoint",
        str(checkpoint),
        "--onnx",
        str(onnx_dir),
        "--data",
        str(catalogue),
        "--split",
        "all",
    ]
    out = tmp_path / "onnx.json"
    report = onnx_runtime.main([*argv, "--queries", "3", "--image-cache", "off", "--json", str(out)])
    assert json.loads(out.read_text()) == report and report["products"] == 36
    assert max(report["max_abs_diff_vs_torch"]["onnx"].values()) <= PARITY_TOLERANCE
    fp32 = report["quality_first_stage"]["onnx"]["text_to_image"]
    assert fp32 == report["quality_first_stage"]["torch"]["text_to_image"]
    assert set(report["quality_first_stage"]) == {
        "torch",
        "onnx",
        "onnx-int8",
        "onnx-int8 queries, torch index",
    }
    for runtime in ("torch", "onnx", "onnx-int8"):
        assert report["latency_batch_1"][runtime]["text_first_stage"]["p50_ms"] > 0
