"""``POST /tag`` and tagged search results: a checkpoint's tag heads and zero-shot vocabularies, the
upload bounds of ``/search/image`` (413, 400, 503), and no tags where there is nothing to tag."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.data import bert_tokenizer
from mvlt.data.labels import LabelMaps
from mvlt.search import CatalogueIndex

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from mvlt.cli import main
from mvlt.search.serve import Limits, create_app

from .conftest import IMAGE_SIZE
from .test_serve import png, refused, still_serving

VOCABULARY = {"fit": ["slim", "loose"]}
COLOURS = ["black", "blue", "red"]


@pytest.fixture(scope="module")
def headed_index(tmp_path_factory: pytest.TempPathFactory, catalogue: Path) -> CatalogueIndex:
    """An index built with a checkpoint that has a colour tag head (and its label maps)."""
    torch.manual_seed(0)
    model = mvlt.create_model("mvlt_nano", image_size=IMAGE_SIZE, contrastive_dim=32, max_text_len=48,
                              tag_classes={"colour": len(COLOURS)})  # fmt: skip
    model.tokenizer = bert_tokenizer(max_length=48)
    model.label_maps = LabelMaps.build([], [], {"colour": COLOURS})
    folder = tmp_path_factory.mktemp("headed")
    model.save_pretrained(folder / "checkpoint")
    CatalogueIndex.build(folder / "checkpoint", catalogue, folder / "index", precision="fp32")
    return CatalogueIndex.load(folder / "index", precision="fp32")


@pytest.fixture(scope="module")
def client(headed_index: CatalogueIndex) -> TestClient:
    limits = Limits(max_upload_bytes=200_000, max_pixels=1_000_000, max_concurrent=2)
    app = create_app(headed_index, limits=limits, default_rerank=4, tag_vocabulary=VOCABULARY)
    return TestClient(app, raise_server_exceptions=False)


def test_a_photo_gets_tags_from_the_heads_and_the_vocabulary(client: TestClient) -> None:
    response = client.post("/tag", files={"image": ("p.png", png())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == "p.png"
    assert body["sources"] == {"colour": "fine-tuned", "fit": "zero-shot"}
    assert {t["label"] for t in body["tags"]["colour"]} <= set(COLOURS) and len(body["tags"]["colour"]) == 3
    assert body["tags"]["fit"][0]["probability"] >= body["tags"]["fit"][1]["probability"]
    assert client.get("/healthz").json()["tags"] == body["sources"]


def test_search_results_carry_their_tags(client: TestClient, headed_index: CatalogueIndex) -> None:
    results = client.get("/search", params={"q": "a red shirt", "k": 3}).json()["results"]
    assert len(results) == 3 and all(set(r["tags"]) == {"colour", "fit"} for r in results)
    photo = headed_index.catalogue.load_image(results[0]["row"])
    expected = client.post("/tag", files={"image": ("p.png", _png_of(photo))}).json()["tags"]["colour"][0]
    assert results[0]["tags"]["colour"][0]["label"] == expected["label"]


def _png_of(image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_tag_uploads_are_bounded_like_photo_search(client: TestClient) -> None:
    post = client.post
    refused(post("/tag", files={"photo": ("p.png", png())}), 400, "field 'image'")
    refused(post("/tag", content=png(), headers={"content-type": "image/png"}), 400, "field 'image'")
    refused(post("/tag", files={"image": ("e.png", b"")}), 400, "empty")
    refused(post("/tag", files={"image": ("t.txt", b"hello, not a picture")}), 400, "not an image")
    refused(post("/tag", files={"image": ("t.png", png()[:60])}), 400, "truncated or corrupt")
    bomb = png((12_000, 12_000), mode="1", colour=0)
    refused(post("/tag", files={"image": ("bomb.png", bomb)}), 413, "the limit is 1,000,000")
    refused(post("/tag", files={"image": ("huge.png", os.urandom(300_000))}), 413, "limit")

    def stream():  # no Content-Length: counted while it arrives
        for _ in range(40):
            yield os.urandom(10_000)

    headers = {"content-type": "multipart/form-data; boundary=x"}
    refused(post("/tag", content=stream(), headers=headers), 413, "over the limit")
    gate = client.app.state.gate
    assert gate.semaphore.acquire(blocking=False) and gate.semaphore.acquire(blocking=False)
    try:
        refused(post("/tag", files={"image": ("p.png", png())}), 503, "busy")
    finally:
        gate.semaphore.release()
        gate.semaphore.release()
    still_serving(client)


def test_nothing_to_tag_is_a_404_and_results_without_tags(index: CatalogueIndex) -> None:
    client = TestClient(create_app(index), raise_server_exceptions=False)
    refused(client.post("/tag", files={"image": ("p.png", png())}), 404, "no tag heads")
    assert client.get("/healthz").json()["tags"] is None
    assert "tags" not in client.get("/search", params={"q": "coat", "k": 2}).json()["results"][0]


def test_serve_refuses_a_vocabulary_from_columns(index_dir: Path, capsys) -> None:
    assert main(["serve", "--index", str(index_dir), "--port", "0", "--zero-shot", "colour"]) == 2
    assert "reads no catalogue columns" in capsys.readouterr().err
