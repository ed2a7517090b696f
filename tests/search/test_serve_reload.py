"""Live index updates: ``POST /admin/reload`` (and SIGHUP) take the folder's new version after
``mvlt index --add``; a damaged index or another checkpoint's is refused, counted in /healthz, and
the old version keeps serving; searches running across swaps all succeed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mvlt.search import CatalogueIndex

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
from fastapi.testclient import TestClient

from mvlt.search.serve import Limits, background_server, create_app, reload_on_sighup

from .conftest import PRODUCTS, write_checkpoint

KEY = "reload-test-key-0123456789"


def small_index(checkpoint: Path, catalogue: Path, out: Path, limit: int) -> CatalogueIndex:
    return CatalogueIndex.build(checkpoint, catalogue, out, limit=limit, precision="fp32")


def add_more(out: Path, catalogue: Path, limit: int | None = None) -> int:
    """What `mvlt index --add` does in another process: its own CatalogueIndex of the folder."""
    return CatalogueIndex.load(out, precision="fp32").add(catalogue, limit=limit)


def ids(response: httpx.Response) -> list[str]:
    return [r["product_id"] for r in response.json()["results"]]


def test_reload_picks_up_added_products(checkpoint: Path, catalogue: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    index = small_index(checkpoint, catalogue, out, limit=20)
    client = TestClient(create_app(index, api_key=KEY), raise_server_exceptions=False)
    key = {"X-API-Key": KEY}
    full = CatalogueIndex.load(out, precision="fp32")
    full.add(catalogue)  # only to know the new products; the folder now has all of them
    newcomer = full.products[PRODUCTS - 1]
    query = {"q": newcomer.text, "k": PRODUCTS, "rerank": 0}
    assert client.post("/admin/reload").status_code == 401  # behind the key
    before = client.get("/healthz").json()
    assert before["products"] == 20 and before["index"]["builds"] == 1
    reply = client.post("/admin/reload", headers=key)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "status": "reloaded",
        "previous_products": 20,
        "products": PRODUCTS,
        "builds": 2,
        "built_at": full.manifest["builds"][-1]["at"],
    }
    health = client.get("/healthz").json()
    assert health["products"] == PRODUCTS and health["reloads"] == {"ok": 1, "refused": 0, "last_error": None}
    found = client.get("/search", params=query, headers=key)
    assert found.json()["products"] == PRODUCTS and newcomer.product_id in ids(found)
    assert client.get(f"/images/{PRODUCTS - 1}", headers=key).status_code == 200


def test_broken_or_foreign_index_is_refused_and_the_old_keeps_serving(
    checkpoint: Path, catalogue: Path, tmp_path: Path
) -> None:
    out = tmp_path / "index"
    index = small_index(checkpoint, catalogue, out, limit=12)
    client = TestClient(create_app(index), raise_server_exceptions=False)
    query = {"q": "a blue skirt", "k": 5, "rerank": 2}
    expected = ids(client.get("/search", params=query))
    (out / "embeddings.safetensors").write_bytes(b"not a safetensors file")
    reply = client.post("/admin/reload")
    assert reply.status_code == 409 and "still serving the old one" in reply.json()["error"]
    assert "damaged index" in reply.json()["error"]
    health = client.get("/healthz").json()
    assert health["products"] == 12 and health["reloads"]["refused"] == 1
    assert "damaged index" in health["reloads"]["last_error"]
    assert ids(client.get("/search", params=query)) == expected
    # the folder rebuilt by another checkpoint: its embeddings do not fit the model being served
    other = write_checkpoint(tmp_path / "other", seed=1)
    CatalogueIndex.build(other, catalogue, out, precision="fp32")
    reply = client.post("/admin/reload")
    assert reply.status_code == 409 and "another checkpoint" in reply.json()["error"]
    assert client.get("/healthz").json()["reloads"]["refused"] == 2
    assert ids(client.get("/search", params=query)) == expected


def test_searches_during_swaps_all_succeed(checkpoint: Path, catalogue: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    index = small_index(checkpoint, catalogue, out, limit=8)
    app = create_app(index, limits=Limits(max_concurrent=16))
    stop = threading.Event()
    seen: list[tuple[int, int]] = []  # (status, products) per response
    failures: list[str] = []

    def hammer(url: str, photo: bytes) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                try:
                    if len(seen) % 3:
                        r = client.get("/search", params={"q": "striped dress", "k": 50, "rerank": 2})
                    else:
                        r = client.post(
                            "/search/image", files={"image": ("p.png", photo)}, params={"k": 50, "rerank": 2}
                        )
                    body = r.json()
                    seen.append((r.status_code, body.get("products", -1)))
                    if r.status_code == 200 and not all(x["row"] < body["products"] for x in body["results"]):
                        failures.append(f"a row past the index's {body['products']} products")
                except httpx.HTTPError as err:
                    failures.append(repr(err))

    photo = index.image_path(0).read_bytes()
    with background_server(app) as url:
        threads = [threading.Thread(target=hammer, args=(url, photo)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for limit in (6, 6, 6, None):  # 8 -> 14 -> 20 -> 26 -> 36 products
                add_more(out, catalogue, limit)
                assert httpx.post(url + "/admin/reload", timeout=60).status_code == 200
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        health = httpx.get(url + "/healthz").json()
    assert not failures, failures[:3]
    assert {status for status, _ in seen} == {200} and len(seen) >= 8
    assert {8, PRODUCTS} <= {products for _, products in seen}
    assert health["products"] == PRODUCTS and health["reloads"]["ok"] == 4


def test_sighup_reloads(checkpoint: Path, catalogue: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    index = small_index(checkpoint, catalogue, out, limit=10)
    app = create_app(index)
    live = app.state.live
    previous = reload_on_sighup(live)
    try:
        add_more(out, catalogue)
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 60
        while live.reloads["ok"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert live.reloads == {"ok": 1, "refused": 0} and len(live.current) == PRODUCTS
