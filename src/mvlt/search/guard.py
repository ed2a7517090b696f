"""The server's outer layers, as plain ASGI middleware (they never buffer or wrap a body, so an
upload streams through them untouched and a client's disconnect reaches the route as it happens).

- :class:`AccessLog` (outermost): gives every response an ``X-Request-ID`` (the client's when it
  sent a sane one, else a new one), writes one access-log line per request, and turns an
  unexpected exception into one logged traceback and a 500 JSON, instead of the two tracebacks
  Starlette's error middleware and uvicorn would print. It also answers 414 to a query string
  over :data:`MAX_QUERY_BYTES` (longer than any valid query) before any route parses it.
- :class:`ApiKey`: with a key set, every path but ``/healthz`` and the page ``/`` needs
  ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; the key is compared in constant time and
  never logged.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mvlt.search")
access = logging.getLogger("mvlt.search.access")

OPEN_PATHS = frozenset({"/healthz", "/"})
"""Paths answered without a key: the health probe (load balancers and orchestrators call it) and
the search page, static HTML with no data in it, which a browser loads without a header and which
then sends the key with each call (see ``static/index.html``)."""

MAX_QUERY_BYTES = 8 << 10
"""The longest query string answered with more than 414. Longer request lines than uvicorn's h11
buffer (16 kB) never reach the app: uvicorn answers 400 and closes, which a client still sending
megabytes usually sees as a connection reset (draining them to answer 414 would be the DoS)."""

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body of every refusal: ``{"error": reason, "status": status}``."""
    return JSONResponse({"error": reason, "status": status}, status_code=status, headers=headers)


def loggable_path(scope: Scope) -> str:
    """The path and the query's parameter names, never their values (a query may hold a key or
    a person's words)."""
    path = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    names = [part.split("=", 1)[0] for part in query.split("&") if part]
    return f"{path}?{'&'.join(names[:8])}" if names else path


class AccessLog:
    """Request ids, one access-log line per request, and the last word on unexpected errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = Headers(scope=scope).get("x-request-id", "")
        request_id = sent if _SANE_ID.fullmatch(sent) else uuid.uuid4().hex
        status, start, method = 0, time.perf_counter(), scope["method"]

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            query = len(scope.get("query_string", b""))
            if query > MAX_QUERY_BYTES:
                reason = f"the query string is {query:,} bytes; the limit is {MAX_QUERY_BYTES:,}"
                await error_response(414, reason)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception as exc:  # the last handler: log once, answer 500 if nothing was sent yet
            log.exception(
                "unexpected error on %s %s (request %s)", scope["method"], scope["path"], request_id
            )
            if not status:
                await error_response(500, f"internal error: {type(exc).__name__}")(
                    scope, receive, send_with_id
                )
        finally:
            ms = (time.perf_counter() - start) * 1000
            access.info("%s %s %s %.1f ms id=%s", method, loggable_path(scope), status or "-", ms, request_id)


class ApiKey:
    """Refuse (401) every request without the key but those for :data:`OPEN_PATHS` (a CORS
    preflight never gets here: the CORS layer outside this one answers it)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        if not key:
            raise ValueError("the API key is empty")
        self.app, self.key = app, key.encode()

    def authorised(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self.authorised(scope):
            await self.app(scope, receive, send)
            return
        reason = "an API key is needed: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        await error_response(401, reason, {"WWW-Authenticate": "Bearer"})(scope, receive, send)


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Keyword arguments for Starlette's ``CORSMiddleware``: only ``origins``, and the headers the
    API reads."""
    return {
        "allow_origins": list(origins),
        "allow_methods": ["GET", "HEAD", "POST"],
        "allow_headers": ["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"],
        "expose_headers": ["X-Request-ID", "Retry-After"],
    }
