"""Load on ``mvlt serve``: N concurrent clients for S seconds, mixed text and photo queries, with
and without re-ranking; throughput, latency percentiles, errors by status, the server's memory.

    .venv/bin/python benchmarks/serve_load.py --url http://127.0.0.1:8000 [--pid PID] [--api-key KEY]
    .venv/bin/python benchmarks/serve_load.py --index runs/hm-index [--serve-arg=--max-concurrent=8]
        [--clients 8] [--seconds 30] [--photo-share 0.3] [--rerank 0,20] [--json FILE]
        [--add-data CATALOGUE [--add-after S]]

With ``--index`` it starts ``mvlt serve`` on a free port itself (and stops it after); with
``--url`` it loads a running server, whose resident memory it reads from /proc when ``--pid`` says
which process it is. The photos are the server's own product images (``/images/ROW``), fetched
once before the clock starts, so no data set is needed. ``--add-data`` updates the index under
load: ``--add-after`` seconds in, ``mvlt index --add --out INDEX --data CATALOGUE`` runs beside the
server, then ``POST /admin/reload`` switches it; the report says when, how many products came, and
whether the new products are found (a query with each one's own text over the products' texts).
The client is asyncio on httpx, one connection per client: it needs no torch and barely loads the
machine it measures. Run it on a quiet machine: its numbers are the server's, not the test suite's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

QUERIES = [
    "black wool coat with a hood",
    "red floral summer dress",
    "blue denim jeans slim fit",
    "white cotton t-shirt",
    "striped knitted jumper",
    "leather ankle boots",
    "yellow polka dot skirt",
    "grey hoodie with a zip",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    where.add_argument("--index", type=Path, help="start `mvlt serve --index DIR` on a free port")
    p.add_argument("--serve-arg", action="append", default=[], help="a flag for mvlt serve (repeatable)")
    p.add_argument("--pid", type=int, default=None, help="the server's process id (with --url): its RSS")
    p.add_argument("--api-key", default=None, help="sent as X-API-Key")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to load (default 30)")
    p.add_argument("--photo-share", type=float, default=0.3, help="share of photo queries (default 0.3)")
    p.add_argument(
        "--rerank", default="0,20", help="re-ranking depths to mix, comma-separated (default 0,20)"
    )
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--photos", type=int, default=16, help="product images to query with (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the report here as JSON")
    p.add_argument(
        "--warmup", type=float, default=0.0, help="seconds of the same load before RSS start and the clock"
    )
    p.add_argument(
        "--add-data", default=None, help="with --index: `mvlt index --add` this catalogue under load"
    )
    p.add_argument("--add-after", type=float, default=None, help="seconds in (default: a third of --seconds)")
    args = p.parse_args(argv)
    if args.add_data is not None and args.index is None:
        p.error("--add-data needs --index (the folder to add to)")
    if args.clients < 1 or not args.seconds > 0 or not 0 <= args.photo_share <= 1:
        p.error("--clients >= 1, --seconds > 0 and --photo-share in [0, 1], please")
    return args


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of process ``pid`` in MiB (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def percentiles(ms: list[float]) -> dict[str, float | None]:
    """p50 / p95 / p99 (nearest rank) and the mean, in ms."""
    if not ms:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    ms = sorted(ms)

    def rank(q: float) -> float:
        return round(ms[min(len(ms) - 1, max(0, int(q * len(ms) + 0.5) - 1))], 2)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "mean": round(sum(ms) / len(ms), 2)}


async def fetch_photos(client: httpx.AsyncClient, count: int) -> list[bytes]:
    """The first ``count`` product images of the server itself."""
    products = (await client.get("/healthz")).json()["products"]
    photos = []
    for row in range(min(count, products)):
        response = await client.get(f"/images/{row}")
        if response.status_code == 200:
            photos.append(response.content)
    return photos


async def one_client(
    client: httpx.AsyncClient,
    deadline: float,
    rng: random.Random,
    photos: list[bytes],
    args: argparse.Namespace,
    depths: list[int],
    log: list[tuple[str, int, float, int | str]],
) -> None:
    """Query until ``deadline``; log (kind, rerank, ms, status or error name) per request."""
    while time.perf_counter() < deadline:
        rerank = rng.choice(depths)
        photo = bool(photos) and rng.random() < args.photo_share
        start = time.perf_counter()
        try:
            if photo:
                files = {"image": ("query.png", rng.choice(photos))}
                response = await client.post(
                    "/search/image", params={"k": args.k, "rerank": rerank}, files=files
                )
            else:
                params = {"q": rng.choice(QUERIES), "k": args.k, "rerank": rerank}
                response = await client.get("/search", params=params)
            outcome: int | str = response.status_code
        except httpx.HTTPError as err:
            outcome = type(err).__name__
        log.append(("photo" if photo else "text", rerank, (time.perf_counter() - start) * 1000, outcome))
        if outcome == 503:  # shed: wait as the server asks, as a polite client would
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def update(client: httpx.AsyncClient, args: argparse.Namespace, start: float) -> dict[str, Any]:
    """``mvlt index --add`` beside the loaded server, then ``POST /admin/reload`` (s from ``start``)."""
    await asyncio.sleep(args.add_after if args.add_after is not None else args.seconds / 3)
    before = (await client.get("/healthz")).json()["products"]
    began = time.perf_counter() - start
    argv = [sys.executable, "-m", "mvlt", "index", "--add", "--out", str(args.index), "--data", args.add_data]
    argv += ["--no-progress", "--image-cache", "auto"]
    indexer = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = (await indexer.communicate())[0].decode(errors="replace").strip().splitlines()
    indexed = time.perf_counter() - start
    reload = await client.post("/admin/reload", timeout=300)
    return {
        "products_before": before,
        "index_add_started_s": round(began, 2),
        "index_add_seconds": round(indexed - began, 2),
        "index_add_exit": indexer.returncode,
        "index_add_said": output[-1] if output else "",
        "reload_status": reload.status_code,
        "reload_ms": round((time.perf_counter() - start - indexed) * 1000, 1),
        "switched_at_s": round(time.perf_counter() - start, 2),
        "reload": reload.json(),
    }


async def findable(
    client: httpx.AsyncClient, index: Path, first_row: int, sample: int = 50
) -> dict[str, Any]:
    """How many of the products from row ``first_row`` on (the added ones) come back for their own text
    searched over the products' texts (an exact match: found unless another product has that text)."""
    lines = (index / "products.jsonl").read_text(encoding="utf-8").splitlines()[first_row:]
    added = [json.loads(line) for line in lines]
    picked = random.Random(0).sample(added, min(sample, len(added)))
    found = 0
    for product in picked:
        params = {"q": product["text"][:512], "k": 10, "rerank": 0, "over": "texts"}
        results = (await client.get("/search", params=params)).json().get("results", [])
        found += any(r["product_id"] == product["product_id"] for r in results)
    return {"added_products": len(added), "checked": len(picked), "found_in_top_10": found}


async def load(url: str, args: argparse.Namespace, pid: int | None) -> dict[str, Any]:
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients + 1)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        photos = await fetch_photos(client, args.photos)
        depths = [int(d) for d in args.rerank.split(",")]
        log: list[tuple[str, int, float, int | str]] = []
        rss_cold = rss_mb(pid)
        if args.warmup > 0:  # the same load, not counted: caches, arenas and pools fill first
            warm = random.Random(args.seed - 1)
            end = time.perf_counter() + args.warmup
            await asyncio.gather(
                *(one_client(client, end, warm, photos, args, depths, []) for _ in range(args.clients))
            )
        rss_start = rss_mb(pid)
        start = time.perf_counter()
        deadline = start + args.seconds
        rngs = [random.Random(args.seed * 1000 + i) for i in range(args.clients)]
        clients = [one_client(client, deadline, r, photos, args, depths, log) for r in rngs]
        updating = [update(client, args, start)] if args.add_data else []
        outcome = await asyncio.gather(*clients, *updating)
        elapsed = time.perf_counter() - start
        updated = outcome[-1] if updating else None
        if updated is not None:
            updated["findable"] = await findable(client, args.index, updated["products_before"])
    ok = [entry for entry in log if entry[3] == 200]
    by_mix: dict[str, list[float]] = defaultdict(list)
    for kind, rerank, ms, _ in ok:
        by_mix[f"{kind} rerank={rerank}"].append(ms)
    return {
        "url": url,
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "requests": len(log),
        "ok": len(ok),
        "throughput_per_s": round(len(ok) / elapsed, 2),
        "latency_ms": percentiles([entry[2] for entry in ok]),
        "latency_ms_by_mix": {mix: {"n": len(ms), **percentiles(ms)} for mix, ms in sorted(by_mix.items())},
        "errors": {str(k): n for k, n in Counter(e[3] for e in log if e[3] != 200).most_common()},
        "server_rss_mb": {"cold": rss_cold, "start": rss_start, "end": rss_mb(pid)},
        "warmup_s": args.warmup,
        "photos": len(photos),
        "update": updated,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def start_server(index: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """``mvlt serve --index INDEX --port 0 EXTRA`` and its URL, read from its first line."""
    argv = [sys.executable, "-m", "mvlt", "serve", "--index", str(index), "--port", "0"]
    argv += [part for arg in extra for part in shlex.split(arg)]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if " at http" not in line:
        server.kill()
        raise SystemExit(f"{shlex.join(argv)} did not start: {line.strip() or 'no output'}")
    return server, line.rsplit(" at ", 1)[1].strip().rstrip("/")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    server = None
    url, pid = args.url, args.pid
    if args.index is not None:
        server, url = start_server(args.index, args.serve_arg)
        pid = server.pid
    try:
        report = asyncio.run(load(url.rstrip("/"), args, pid))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
