"""The HTTP API in-process: answers, every bounded input refused with a 4xx JSON reason, images
served only from the catalogue folder, and the server still serving after each refusal."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from mvlt.search import CatalogueIndex

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from mvlt.search.serve import Limits, create_app

from ..manifests import write_manifest
from .conftest import write_catalogue


@pytest.fixture(scope="module")
def client(index: CatalogueIndex) -> TestClient:
    limits = Limits(max_upload_bytes=200_000, max_pixels=1_000_000, max_concurrent=2)
    return TestClient(create_app(index, limits=limits, default_rerank=4), raise_server_exceptions=False)


def png(size: tuple[int, int] = (40, 40), mode: str = "RGB", colour: object = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, format="PNG")
    return out.getvalue()


def still_serving(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/search", params={"q": "a shirt", "k": 2}).status_code == 200


def refused(response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and reason in body["error"], body


def test_healthz_page_and_text_search(client: TestClient, index: CatalogueIndex) -> None:
    health = client.get("/healthz").json()
    assert health["products"] == len(index) and health["checkpoint_sha256"] == index.checkpoint["sha256"]
    assert health["default_rerank"] == 4 and health["limits"]["max_k"] == 100
    page = client.get("/")
    assert page.status_code == 200 and 'id="search-form"' in page.text and 'type="file"' in page.text
    body = client.get("/search", params={"q": "a blue skirt", "k": 6}).json()
    assert body["query"] == "a blue skirt" and body["rerank"] == 4 and body["latency_ms"] > 0
    expected = index.search("a blue skirt", k=6, rerank=4)
    assert [r["row"] for r in body["results"]] == [h.row for h in expected]
    first = body["results"][0]
    assert {"product_id", "text", "category", "subcategory", "score", "image_url"} <= first.keys()
    image = client.get(first["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == index.image_path(first["row"]).read_bytes()
    plain = client.get("/search", params={"q": "a blue skirt", "k": 3, "rerank": 0}).json()
    assert [r["stage"] for r in plain["results"]] == ["first"] * 3


def test_photo_search(client: TestClient, index: CatalogueIndex) -> None:
    photo = index.image_path(7).read_bytes()
    response = client.post(
        "/search/image", params={"k": 3, "over": "images"}, files={"image": ("p.png", photo)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == "p.png" and body["results"][0]["row"] == 7 and body["over"] == "images"
    response = client.post("/search/image", files={"image": ("p.png", photo, "image/png")})
    assert [r["stage"] for r in response.json()["results"]][:5] == ["rerank"] * 4 + ["first"]


def test_bad_text_queries(client: TestClient) -> None:
    refused(client.get("/search"), 400, "query is empty")
    refused(client.get("/search", params={"q": "   "}), 400, "query is empty")
    refused(client.get("/search", params={"q": "x" * 513}), 400, "limit is 512")
    refused(client.get("/search", params={"q": "coat", "k": 0}), 400, "k must be between 1 and 100")
    refused(client.get("/search", params={"q": "coat", "k": 101}), 400, "k must be between 1 and 100")
    refused(client.get("/search", params={"q": "coat", "k": "ten"}), 400, "k:")
    refused(
        client.get("/search", params={"q": "coat", "rerank": 101}), 400, "rerank must be between 0 and 100"
    )
    refused(client.get("/search", params={"q": "coat", "over": "sounds"}), 400, "over must be")
    refused(client.get("/search", params={"q": "coat", "over": "texts", "rerank": 3}), 400, "rerank scores")
    refused(client.get("/nowhere"), 404, "Not Found")
    still_serving(client)


def test_bad_uploads(client: TestClient) -> None:
    post = client.post
    refused(post("/search/image", files={"photo": ("p.png", png())}), 400, "field 'image'")
    refused(post("/search/image", data={"image": "text, not a file"}), 400, "field 'image'")
    refused(post("/search/image", content=png(), headers={"content-type": "image/png"}), 400, "field 'image'")
    refused(post("/search/image", files={"image": ("e.png", b"")}), 400, "empty")
    refused(post("/search/image", files={"image": ("t.txt", b"hello, not a picture")}), 400, "not an image")
    refused(post("/search/image", files={"image": ("t.png", png()[:60])}), 400, "truncated or corrupt")
    refused(post("/search/image", params={"k": 500}, files={"image": ("p.png", png())}), 400, "k must be")
    # a decompression bomb: ~2 kB on the wire, 144 million pixels once decoded; refused from its header
    bomb = png((12_000, 12_000), mode="1", colour=0)
    assert len(bomb) < 100_000
    refused(post("/search/image", files={"image": ("bomb.png", bomb)}), 413, "the limit is 1,000,000")
    refused(post("/search/image", files={"image": ("big.png", png((1200, 900)))}), 413, "pixels")
    noise = os.urandom(300_000)
    refused(post("/search/image", files={"image": ("huge.png", noise)}), 413, "limit")

    def stream():  # no Content-Length: counted while it arrives
        for _ in range(40):
            yield os.urandom(10_000)

    headers = {"content-type": "multipart/form-data; boundary=x"}
    refused(post("/search/image", content=stream(), headers=headers), 413, "over the limit")
    still_serving(client)


def test_busy_server_answers_503_and_recovers(client: TestClient) -> None:
    gate = client.app.state.gate
    assert gate.semaphore.acquire(blocking=False) and gate.semaphore.acquire(blocking=False)
    try:
        response = client.get("/search", params={"q": "coat"})
        refused(response, 503, "busy")
        assert response.headers["retry-after"] == "1"
        refused(client.post("/search/image", files={"image": ("p.png", png())}), 503, "busy")
    finally:
        gate.semaphore.release()
        gate.semaphore.release()
    still_serving(client)


def test_images_come_only_from_the_catalogue_folder(checkpoint: Path, tmp_path: Path) -> None:
    shop = write_catalogue(tmp_path / "shop", products=3)
    (tmp_path / "secret.png").write_bytes(png())
    (shop.parent / "images" / "link.png").symlink_to(tmp_path / "secret.png")
    with shop.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows.append({**rows[0], "image": "../secret.png", "product_id": "outside1"})
    rows.append({**rows[0], "image": "images/link.png", "product_id": "linked1"})
    write_manifest(shop, rows)
    out = tmp_path / "index"
    index = CatalogueIndex.build(checkpoint, shop, out, precision="fp32")
    assert [p.product_id for p in index.products][-2:] == ["outside1", "linked1"]
    client = TestClient(create_app(index), raise_server_exceptions=False)
    assert client.get("/images/0").status_code == 200
    refused(client.get("/images/3"), 403, "outside the catalogue folder")  # ../secret.png in the manifest
    refused(client.get("/images/4"), 403, "outside the catalogue folder")  # a symlink out of it
    refused(client.get("/images/5"), 404, "no product image")
    refused(client.get("/images/-1"), 404, "no product image")
    refused(client.get("/images/%2e%2e"), 404, "no product image")
    for attempt in (
        "/images/..%2F..%2Fsecret.png",
        "/images/%2e%2e%2fsecret.png",
        "/images/images%2Flink.png",
        "/images/../../secret.png",
        "/images//etc/passwd",
    ):
        refused(client.get(attempt), 404, "Not Found")  # no route: rows are numbers, never paths
    (shop.parent / "images" / f"{index.products[1].product_id}.png").unlink()
    refused(client.get("/images/1"), 404, "missing")
    still_serving(client)
