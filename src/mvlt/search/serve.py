"""``mvlt serve``: a JSON API and one search page over a :class:`~mvlt.search.CatalogueIndex`.

Routes: ``GET /`` (the page), ``GET|HEAD /healthz``, ``GET /search?q=...&k=...&rerank=...``,
``POST /search/image`` (multipart field ``image``), ``GET /images/{row}`` (a product's photo),
``POST /admin/reload`` (take the index folder's new version: :class:`LiveIndex`; SIGHUP does too)
and, when the checkpoint has tag heads or a zero-shot vocabulary is given, ``POST /tag`` (a
photo's tags, with the upload bounds of ``/search/image``; search results then carry their tags).

Every request is bounded (:class:`Limits`): query length, ``k`` and ``rerank`` at most 100,
upload bytes (counted while the body streams in, not after), image pixels (checked from the
header, before any decoding: a decompression bomb is refused unopened) and searches in progress
(more get 503 with ``Retry-After`` at once instead of queueing without bound). An upload is read
whole, within ``upload_timeout_s``, *before* it takes a search slot: a client that stalls or
trickles its body gets 408 and never holds a slot. Bad input gets a 4xx JSON ``{"error": reason}``;
an unexpected failure a 500 JSON; the server keeps serving either way. Access control, request ids
and the access log are the outer layers of :mod:`mvlt.search.guard`.
Images are served only from the index's catalogue folder: a product row is mapped to its file,
which must resolve (symlinks included) inside that folder.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import mimetypes
import re
import signal
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from ..data.images import to_rgb
from ..exits import ERRORS
from .guard import AccessLog, ApiKey, cors_options, error_response
from .index import CatalogueIndex, QueryError
from .tags import ServedTags, served_tags

log = logging.getLogger("mvlt.search")

MULTIPART_OVERHEAD = 64 << 10
"""Bytes a multipart body may carry beyond the photo itself (boundaries, headers, small fields)."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_query_chars: int = 512
    max_k: int = 100
    max_rerank: int = 100
    max_upload_bytes: int = 10 << 20
    max_pixels: int = 40_000_000
    max_concurrent: int = 4
    upload_timeout_s: float = 30.0


class ApiError(HTTPException):
    """A request the server refuses, with the status and the reason sent back as JSON."""


_error = error_response

_DIGITS = re.compile(r"[0-9]{1,12}")
"""An image row or a Content-Length as we read them: ASCII digits only (``str.isdigit`` also takes
``²`` and Arabic-Indic digits, which ``int()`` then refuses or reads) and short enough to be sane."""


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """An uploaded photo as RGB; its size is read from the header and checked before decoding."""
    if not data:
        raise ApiError(400, "the uploaded photo is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit follows
            img = Image.open(io.BytesIO(data))
        with img:
            width, height = img.size
            if width * height > max_pixels:
                size = f"{width} x {height} = {width * height:,} pixels"
                raise ApiError(413, f"the photo is {size}; the limit is {max_pixels:,}")
            img.load()
            return to_rgb(img)
    except Image.DecompressionBombError as err:
        raise ApiError(413, f"the photo has too many pixels to decode ({err})") from err
    except UnidentifiedImageError as err:
        raise ApiError(400, "the upload is not an image (JPEG, PNG, WebP, ... expected)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ApiError(400, f"the photo is truncated or corrupt ({err})") from err


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes and with 408 when
    it has not arrived whole within ``timeout_s`` (a stalled or trickled upload must not keep a
    connection, let alone a search slot, forever). A client that hangs up gets one log line."""
    declared = request.headers.get("content-length", "")
    if _DIGITS.fullmatch(declared) and int(declared) > limit:
        raise ApiError(413, f"the upload is {int(declared):,} bytes; the limit is {limit:,}")
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise ApiError(413, f"the upload is over the limit of {limit:,} bytes")

    try:
        await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError as err:
        got = f"{len(body):,} bytes in {timeout_s:g} s"
        raise ApiError(
            408, f"the upload did not arrive in time ({got}); send it whole", {"Connection": "close"}
        ) from err
    except ClientDisconnect as err:
        log.info("client hung up during an upload to %s after %s bytes", request.url.path, f"{len(body):,}")
        raise ApiError(400, "the client disconnected during the upload") from err
    return bytes(body)


def _replay(body: bytes) -> Any:
    """An ASGI ``receive`` that hands ``body`` over once (to parse a body already read)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class _Gate:
    """At most ``n`` searches at once; the next is refused (503), not queued."""

    def __init__(self, n: int) -> None:
        self.semaphore = threading.BoundedSemaphore(n)
        self.n = n

    def __enter__(self) -> _Gate:
        if not self.semaphore.acquire(blocking=False):
            raise ApiError(503, f"busy: {self.n} searches are running; retry shortly", {"Retry-After": "1"})
        return self

    def __exit__(self, *exc: object) -> None:
        self.semaphore.release()


class LiveIndex:
    """The index being served, replaced whole by :meth:`reload` when ``mvlt index --add`` (or a
    rebuild) has rewritten its folder. The new version is read and its backends built *beside*
    the old one, then one reference is swapped; a request takes :attr:`current` once and uses that
    object to the end, so no response mixes two versions and none fails during a swap. A version
    that cannot be read (damaged, half there, another checkpoint's) is refused, logged and
    counted, and the old one keeps serving."""

    ATTEMPTS = 3
    """Reads of the folder before a reload is refused: ``atomic_directory`` swaps it with two
    renames, and a read that falls between them (or across them) sees no or a mixed folder."""

    def __init__(self, index: CatalogueIndex) -> None:
        self.current = index
        self.reloads = {"ok": 0, "refused": 0}
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one reload at a time; searches never wait for it

    def reload(self) -> dict[str, Any]:
        """Swap in the folder's current version, or raise :class:`ApiError` 409 (old one kept)."""
        with self._lock:
            old = self.current
            for attempt in range(1, self.ATTEMPTS + 1):
                try:
                    fresh = old.reopen()
                    break
                except ERRORS as err:
                    if attempt < self.ATTEMPTS:
                        time.sleep(0.2)
                        continue
                    self.reloads["refused"] += 1
                    self.last_error = str(err)
                    log.error("reload refused, still serving %d products: %s", len(old), err)
                    raise ApiError(
                        409, f"the index was not reloaded, still serving the old one: {err}"
                    ) from err
            self.current = fresh
            self.reloads["ok"] += 1
            log.info("reloaded %s: %d products (were %d)", fresh.path, len(fresh), len(old))
            return {"status": "reloaded", "previous_products": len(old), **self.version()}

    def version(self) -> dict[str, Any]:
        """What identifies the version being served: its products and builds (``index.json``)."""
        index = self.current
        builds = index.manifest["builds"]
        return {
            "products": len(index),
            "builds": len(builds),
            "built_at": builds[-1]["at"] if builds else None,
        }

    def health(self) -> dict[str, Any]:
        return {**self.reloads, "last_error": self.last_error}


def reload_on_sighup(live: LiveIndex) -> Any:
    """``kill -HUP PID`` reloads the index (on a thread: a signal handler must return at once);
    returns the previous handler. A refusal is logged and counted by :class:`LiveIndex`."""

    def reload_quietly() -> None:
        with suppress(ApiError):
            live.reload()

    def handler(signum: int, frame: Any) -> None:
        threading.Thread(target=reload_quietly, name="mvlt-reload", daemon=True).start()

    return signal.signal(signal.SIGHUP, handler)


def create_app(
    index: CatalogueIndex,
    *,
    limits: Limits | None = None,
    default_rerank: int = 20,
    api_key: str | None = None,
    cors_origins: list[str] | None = None,
    tag_vocabulary: dict[str, list[str]] | None = None,
) -> FastAPI:
    """The FastAPI application serving ``index`` (run it with uvicorn: :func:`run_server`).

    ``api_key``: required on every path but ``/healthz`` and the page. ``cors_origins``: the only
    origins whose pages may call the API from a browser (none by default: the page is same-origin).
    ``tag_vocabulary``: zero-shot attributes to tag beside the checkpoint's tag heads.
    ``app.state.live`` is the :class:`LiveIndex`: each route reads ``live.current`` once."""
    limits = limits or Limits()
    tagging: dict[int, ServedTags | None] = {}
    default_rerank = min(default_rerank, limits.max_rerank)
    gate = _Gate(limits.max_concurrent)
    page = resources.files("mvlt.search").joinpath("static/index.html").read_text(encoding="utf-8")
    app = FastAPI(title="mvlt search", docs_url=None, redoc_url=None, openapi_url=None)
    live = LiveIndex(index)
    app.state.live, app.state.limits, app.state.gate = live, limits, gate

    def tags_of(index: CatalogueIndex) -> ServedTags | None:
        """The tagger of the index a request holds: a reload brings a new model, so new tags
        (the one cached tagger keeps its index alive, so an ``id`` is never reused under it)."""
        if id(index) not in tagging:
            tagging.clear()
            tagging[id(index)] = served_tags(index, tag_vocabulary)
        return tagging[id(index)]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        return _error(400, "; ".join(parts) or "bad request")

    # outermost last: AccessLog (ids, log, 500s) > CORS (answers preflights) > ApiKey > routes
    if api_key is not None:
        if not api_key:
            raise ValueError("the API key is empty")
        app.add_middleware(ApiKey, key=api_key)
    if cors_origins:
        app.add_middleware(CORSMiddleware, **cors_options(cors_origins))
    app.add_middleware(AccessLog)

    def options(k: int, rerank: int | None, cross_modal: bool) -> tuple[int, int]:
        """Checked ``k`` and ``rerank``; the default re-ranks only where ITM applies."""
        if not 1 <= k <= limits.max_k:
            raise ApiError(400, f"k must be between 1 and {limits.max_k}, got {k}")
        if rerank is None:
            rerank = default_rerank if cross_modal else 0
        if not 0 <= rerank <= limits.max_rerank:
            raise ApiError(400, f"rerank must be between 0 and {limits.max_rerank}, got {rerank}")
        return k, rerank

    def run_search(index: CatalogueIndex, **query: Any) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            hits = index.search(**query)
        except QueryError as err:
            raise ApiError(400, str(err)) from err
        latency = (time.perf_counter() - start) * 1000
        results = [{**h.to_dict(), "image_url": f"/images/{h.row}"} for h in hits]
        tags = tags_of(index)
        if tags is not None:
            for result, tagged in zip(results, tags.products([h.row for h in hits])):
                result["tags"] = tagged
        return {
            "k": query["k"],
            "rerank": query["rerank"],
            "over": query["over"],
            "latency_ms": round(latency, 2),
            "products": len(index),
            "results": results,
        }

    @app.get("/", response_class=HTMLResponse)
    def home() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _CSP})

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    def healthz() -> dict[str, Any]:
        index = live.current
        return {
            "status": "ok",
            "products": len(index),
            "index": live.version(),
            "reloads": live.health(),
            "runtime": index.runtime,
            "checkpoint_sha256": index.checkpoint["sha256"],
            "backend": index.backend_name,
            "default_rerank": default_rerank,
            "api_key": api_key is not None,
            "limits": asdict(limits),
            "tags": tags.describe() if (tags := tags_of(index)) is not None else None,
        }

    @app.get("/search")
    def search_text(
        q: str | None = None, k: int = 10, rerank: int | None = None, over: str | None = None
    ) -> dict[str, Any]:
        if q is None or not q.strip():
            raise ApiError(400, "the query is empty: pass ?q=words")
        if len(q) > limits.max_query_chars:
            raise ApiError(400, f"the query is {len(q)} characters; the limit is {limits.max_query_chars}")
        k, rerank = options(k, rerank, over in (None, "images"))
        with gate:
            return {"query": q, **run_search(live.current, text=q, k=k, rerank=rerank, over=over)}

    @app.post("/search/image")
    async def search_image(
        request: Request, k: int = 10, rerank: int | None = None, over: str | None = None
    ) -> dict[str, Any]:
        k, rerank = options(k, rerank, over in (None, "texts"))
        filename, data = await read_upload(request)
        with gate:
            picture = decode_upload(data, limits.max_pixels)
            query = {"image": picture, "k": k, "rerank": rerank, "over": over}
            result = await run_in_threadpool(run_search, live.current, **query)
            return {"filename": filename, **result}

    async def read_upload(request: Request) -> tuple[str | None, bytes]:
        """The multipart field ``image`` of a photo upload, within the upload limits."""
        body = await _read_body(
            request, limits.max_upload_bytes + MULTIPART_OVERHEAD, limits.upload_timeout_s
        )
        form = await Request(request.scope, _replay(body)).form(max_files=1, max_fields=8)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "send the photo as multipart/form-data in the field 'image'")
        data = await upload.read()
        if len(data) > limits.max_upload_bytes:
            raise ApiError(413, f"the photo is {len(data):,} bytes; the limit is {limits.max_upload_bytes:,}")
        return upload.filename, data

    @app.post("/tag")
    async def tag_photo(request: Request) -> dict[str, Any]:
        tags = tags_of(live.current)
        if tags is None:
            raise ApiError(
                404, "this server tags nothing: its checkpoint has no tag heads and no vocabulary was given"
            )
        filename, data = await read_upload(request)
        with gate:
            picture = decode_upload(data, limits.max_pixels)
            return {"filename": filename, **await run_in_threadpool(tags.photo, picture)}

    @app.get("/images/{row}")
    def image(row: str) -> FileResponse:
        index = live.current  # rows stay valid across `mvlt index --add` (it appends)
        if not _DIGITS.fullmatch(row) or int(row) >= len(index):
            raise ApiError(404, f"no product image {row!r}: images are addressed by result row")
        path = index.image_path(int(row)).resolve()
        if not path.is_relative_to(index.root.resolve()):
            raise ApiError(403, "this product's image lies outside the catalogue folder and is not served")
        if not path.is_file():
            raise ApiError(404, f"product {row}'s image file is missing")
        kind = mimetypes.guess_type(path.name)[0] or ""
        media = kind if kind.startswith("image/") and kind != "image/svg+xml" else "application/octet-stream"
        return FileResponse(
            path,
            media_type=media,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"},
        )

    @app.post("/admin/reload")
    async def reload() -> dict[str, Any]:
        return await run_in_threadpool(live.reload)

    return app


_CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a thread (``port`` 0: a free one) and yield its URL; it stops
    when the block ends. For tests, notebooks and screenshots."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="mvlt-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, made before the index is loaded so that a
    port in use fails at once, and handed to uvicorn so that nobody can take it in between.
    Raises ``OSError`` naming the port when it is taken or the address is not this machine's."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[
            0
        ]
    except socket.gaierror as err:
        raise OSError(f"--host {host}: not an address of this machine ({err.strerror})") from err
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is in use") from err
        raise OSError(f"cannot listen on {host} port {port}: {err.strerror}") from err
    sock.set_inheritable(True)
    return sock


def run_server(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` with uvicorn on ``sock`` (from :func:`listen`) until interrupted. uvicorn's
    own access log is off: :class:`~mvlt.search.guard.AccessLog` writes one without query values."""
    import uvicorn

    index: CatalogueIndex = app.state.live.current
    reload_on_sighup(app.state.live)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {len(index)} products from {index.path} at http://{shown}:{port}/", flush=True)
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])
