"""What a hostile or careless client found, each answered as it should be: stalled uploads never
hold a search slot, odd image rows are 404s, a hang-up mid-upload is one log line, an unexpected
error one traceback and a 500 JSON, and a busy server says when to come back."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from mvlt.search import CatalogueIndex

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient

from mvlt.search.serve import Limits, background_server, create_app


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), (20, 90, 200)).save(out, format="PNG")
    return out.getvalue()


def multipart(photo: bytes, boundary: str = "mvltboundary") -> tuple[bytes, str]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def call(url: str, data: bytes | None = None, content_type: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def stalled_upload(url: str) -> socket.socket:
    """A connection that sends the headers of a 1 MB photo upload, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(
        b"POST /search/image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 1000000\r\n\r\n--b\r\n"
    )
    return sock


def test_stalled_uploads_hold_no_search_slot_and_time_out(index: CatalogueIndex) -> None:
    app = create_app(index, limits=Limits(max_concurrent=2, upload_timeout_s=1.5), default_rerank=0)
    with background_server(app) as url:
        idle = [stalled_upload(url) for _ in range(4)]
        try:
            time.sleep(0.3)  # the four are now waiting for their bodies
            status, body = call(f"{url}/search?q=a+red+shirt&k=3")
            assert status == 200 and len(body["results"]) == 3, body
            status, body = call(f"{url}/search/image?k=2", *multipart(png()))
            assert status == 200 and len(body["results"]) == 2, body
            for sock in idle:  # each stalled upload is answered 408 and its connection closed
                answer = b"".join(iter(lambda sock=sock: sock.recv(4096), b"")).decode("latin-1")
                assert answer.startswith("HTTP/1.1 408"), answer
                assert "did not arrive in time" in answer
        finally:
            for sock in idle:
                sock.close()
        assert call(f"{url}/healthz")[0] == 200


def test_odd_image_rows_are_404_without_a_traceback(client_and_log) -> None:
    client, records = client_and_log
    for row in ("%C2%B2", "%D9%A3", "1" * 5000, "0x1", "+1", "1.0"):
        response = client.get(f"/images/{row}")
        assert response.status_code == 404 and "no product image" in response.json()["error"], row
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_long_query_string_is_414(client_and_log) -> None:
    client, _ = client_and_log
    response = client.get("/search", params={"q": "x" * 9000})
    assert response.status_code == 414 and "the limit is 8,192" in response.json()["error"]
    assert client.get("/search", params={"q": "x" * 600}).status_code == 400  # the query's own limit


def test_head_healthz_answers_200(client_and_log) -> None:
    client, _ = client_and_log
    response = client.head("/healthz")
    assert response.status_code == 200 and response.content == b""


def test_a_client_that_hangs_up_mid_upload_is_one_log_line(index: CatalogueIndex, caplog) -> None:
    app = create_app(index)
    body, content_type = multipart(png())
    messages = iter(
        [
            {"type": "http.request", "body": body[:100], "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/search/image",
        "raw_path": b"/search/image",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    with caplog.at_level(logging.INFO, logger="mvlt.search"):
        asyncio.run(app(scope, receive, send))
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    hung_up = [r.getMessage() for r in caplog.records if "hung up" in r.getMessage()]
    assert len(hung_up) == 1 and "/search/image after 100 bytes" in hung_up[0]
    assert sent[0]["status"] == 400


def test_an_unexpected_error_is_one_traceback_and_a_500_json(
    index: CatalogueIndex, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(create_app(index), raise_server_exceptions=True)  # nothing may escape the app

    def broken(**query):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(index, "search", broken)
    with caplog.at_level(logging.INFO, logger="mvlt.search"):
        response = client.get("/search", params={"q": "coat"}, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 500 and response.json()["error"] == "internal error: RuntimeError"
    assert response.headers["x-request-id"] == "abc-123"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "abc-123" in tracebacks[0].getMessage()


def test_a_busy_server_says_when_to_retry(index: CatalogueIndex) -> None:
    client = TestClient(create_app(index, limits=Limits(max_concurrent=1)), raise_server_exceptions=False)
    gate = client.app.state.gate
    assert gate.semaphore.acquire(blocking=False)
    try:
        for response in (
            client.get("/search", params={"q": "coat"}),
            client.post("/search/image", files={"image": ("p.png", png())}),
        ):
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert "busy" in response.json()["error"]
    finally:
        gate.semaphore.release()
    assert client.get("/search", params={"q": "coat"}).status_code == 200


@pytest.fixture
def client_and_log(index: CatalogueIndex, caplog) -> tuple[TestClient, list[logging.LogRecord]]:
    caplog.set_level(logging.INFO, logger="mvlt.search")
    return TestClient(create_app(index), raise_server_exceptions=False), caplog.records
