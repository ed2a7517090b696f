"""Who may call the server: the API key (both header forms, /healthz and the page open, the key
never logged), CORS closed unless an origin is named, request ids and the access log."""

from __future__ import annotations

import logging

import pytest

from mvlt.search import CatalogueIndex

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from mvlt.search.serve import create_app

KEY = "s3cret-key-0123456789"
SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def guarded(index: CatalogueIndex) -> TestClient:
    app = create_app(index, default_rerank=0, api_key=KEY, cors_origins=[SHOP])
    return TestClient(app, raise_server_exceptions=False)


def test_the_key_is_needed_on_every_path_but_healthz_and_the_page(guarded: TestClient) -> None:
    wrong = [{}, {"X-API-Key": "wrong"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"}]
    for headers in wrong:
        for path in ("/search?q=coat", "/images/0", "/nowhere"):
            response = guarded.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert "API key" in response.json()["error"] and response.headers["www-authenticate"] == "Bearer"
        assert guarded.post("/search/image", headers=headers, files={"image": ("p", b"x")}).status_code == 401
    health = guarded.get("/healthz")
    assert health.status_code == 200 and health.json()["api_key"] is True and KEY not in health.text
    assert guarded.get("/").status_code == 200  # static HTML; it sends the key with each call
    right = [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}]
    for headers in right:
        assert guarded.get("/search", params={"q": "coat", "k": 2}, headers=headers).status_code == 200
        assert guarded.get("/images/0", headers=headers).status_code == 200


def test_the_page_sends_the_key_it_is_given(guarded: TestClient) -> None:
    page = guarded.get("/").text
    assert "location.hash" in page and '"X-API-Key"' in page and "sessionStorage" in page


def test_cors_is_closed_unless_an_origin_is_named(guarded: TestClient, index: CatalogueIndex) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "X-API-Key"}
    allowed = guarded.options("/search", headers={"Origin": SHOP, **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == SHOP
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    other = guarded.options("/search", headers={"Origin": "https://evil.example", **preflight})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    answer = guarded.get("/search", params={"q": "coat"}, headers={"Origin": SHOP, "X-API-Key": KEY})
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    closed = TestClient(create_app(index), raise_server_exceptions=False)
    for response in (
        closed.options("/search", headers={"Origin": SHOP, **preflight}),
        closed.get("/search", params={"q": "coat"}, headers={"Origin": SHOP}),
    ):
        assert "access-control-allow-origin" not in response.headers


def test_request_ids_and_one_access_line_without_query_values(guarded: TestClient, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mvlt.search.access")
    query = {"q": "private words", "k": 2, "key": KEY}
    sent = guarded.get("/search", params=query, headers={"X-Request-ID": "r-1", "X-API-Key": KEY})
    assert sent.headers["x-request-id"] == "r-1"
    for odd in ("has spaces", "x" * 65, "é".encode()):
        made = guarded.get("/healthz", headers={"X-Request-ID": odd}).headers["x-request-id"]
        assert made != odd and len(made) == 32
    assert guarded.get("/healthz").headers["x-request-id"] != guarded.get("/healthz").headers["x-request-id"]
    assert guarded.get("/search").headers["x-request-id"]  # a 401 carries one too
    lines = [r.getMessage() for r in caplog.records if r.name == "mvlt.search.access"]
    assert len(lines) == 7
    assert lines[0].startswith("GET /search?q&k&key 200 ") and lines[0].endswith(" id=r-1"), lines[0]
    assert " ms " in lines[0] and all(KEY not in line and "private" not in line for line in lines)


def test_an_empty_key_is_refused(index: CatalogueIndex) -> None:
    with pytest.raises(ValueError, match="empty"):
        create_app(index, api_key="")
