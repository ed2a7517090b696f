"""``mvlt index``, ``mvlt search``, ``mvlt serve`` and ``mvlt export``: build a catalogue index, query
it, serve it, and export its encoders to ONNX."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import re
import sys
from pathlib import Path

import torch

from ..exits import ERRORS, UsageError, at_most_arg, count_arg, fail, port_arg, positive_float_arg
from .backends import BACKENDS
from .onnx_encoders import RUNTIMES, require_onnx

OVER_CHOICES = ("images", "texts")
MAX_RERANK = 100
"""The deepest re-ranking a command accepts (the server's limit too): each candidate is one
cross-encoder pass, so 100,000 would run for hours."""


def _execution(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda | cuda:N (default cpu)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="default fp32 on CPU (bf16 CPU kernels are rebuilt for every text length), auto on CUDA",
    )
    p.add_argument("--threads", type=count_arg, default=None, help="CPU threads (torch and onnxruntime)")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="what embeds products and queries: torch (default), or the ONNX graphs of --onnx in "
        "onnxruntime (fp32, or int8 weights); re-ranking stays in torch",
    )
    p.add_argument(
        "--onnx", type=Path, default=None, metavar="DIR", help="the checkpoint's `mvlt export` folder"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        help="embed a catalogue's products (image + text) for search",
        description="Embed every product of a catalogue with a checkpoint's ITC heads and write a search "
        "index (embeddings, product metadata, the checkpoint's content hash) to --out, atomically.",
    )
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint directory (with --add: the one recorded)"
    )
    p.add_argument(
        "--data", required=True, help="catalogue: a manifest, a folder, a Fashion-Gen .h5 or 'synthetic'"
    )
    p.add_argument("--out", required=True, type=Path, help="index directory to write")
    p.add_argument("--split", default=None, help="index only this split (default: every row)")
    p.add_argument("--limit", type=count_arg, default=None, help="index only the first N products")
    p.add_argument(
        "--add",
        action="store_true",
        help="add the products not in --out yet, without re-embedding the others",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="exact",
        help="first-stage search: exact (default) or a FAISS index, hnsw or ivf",
    )
    p.add_argument("--batch-size", type=count_arg, default=64, help="products per forward (default 64)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip unreadable catalogue rows (counted)")
    p.add_argument(
        "--image-cache",
        default="off",
        metavar="DIR",
        help="read images from the decoded-image cache of the whole catalogue: auto "
        "($MVLT_CACHE_DIR/images or ~/.cache/mvlt/images), a folder, or off (default)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _execution(p)
    p.set_defaults(run=run_index)

    p = subparsers.add_parser(
        "search",
        help="query an index with a text or a photo",
        description="The top-k products of an index for a text (matched with their images) or a photo "
        "(matched with their texts); --rerank K re-orders the top K with ITM.",
    )
    p.add_argument("query", nargs="?", default=None, help="the text to search for")
    _index_source(p)
    p.add_argument("--image", type=Path, default=None, help="search with this photo instead of a text")
    p.add_argument("-k", "--top", dest="k", type=count_arg, default=10, help="results (default 10)")
    p.add_argument(
        "--rerank",
        type=at_most_arg(MAX_RERANK),
        default=0,
        help=f"ITM re-ranks the top K, at most {MAX_RERANK} (default 0: off)",
    )
    p.add_argument(
        "--over",
        choices=OVER_CHOICES,
        default=None,
        help="compare with the products' images or texts (default: the other modality)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    _execution(p)
    p.set_defaults(run=run_search)

    p = subparsers.add_parser(
        "serve",
        help="serve an index: JSON API and a search page",
        description="Serve an index over HTTP: GET /search?q=..., POST /search/image, GET /healthz and a "
        "search page at /.",
    )
    _index_source(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs --api-key or --api-key-file)",
    )
    p.add_argument("--port", type=port_arg, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--rerank",
        type=at_most_arg(MAX_RERANK),
        default=20,
        help="the default re-ranking depth (default 20)",
    )
    p.add_argument(
        "--max-concurrent",
        type=count_arg,
        default=4,
        help="searches in progress at once; more get 503 (default 4)",
    )
    p.add_argument(
        "--max-upload-mb", type=positive_float_arg, default=10.0, help="largest photo upload (default 10 MB)"
    )
    p.add_argument(
        "--upload-timeout",
        type=positive_float_arg,
        default=30.0,
        help="seconds an upload may take to arrive; slower ones get 408 (default 30)",
    )
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key", default=None, help="require this key (Bearer or X-API-Key) but on /healthz")
    key.add_argument(
        "--api-key-file", type=Path, default=None, help="read the key from this file's first line"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from this origin (https://shop.example) call the API; repeatable (default none)",
    )
    p.add_argument(
        "--zero-shot",
        dest="zero_shot",
        action="append",
        default=[],
        metavar="SPEC",
        help="also tag zero-shot (POST /tag and the results): colour=black,white,red or a .yaml/.json "
        "file; the checkpoint's tag heads are served without it",
    )
    _execution(p)
    p.set_defaults(run=run_serve)

    p = subparsers.add_parser(
        "export",
        help="export a checkpoint's image and text encoders (ITC embeddings) to ONNX",
        description="Write the image and text encoders that make the search embeddings as ONNX graphs "
        "(dynamic batch, fp32 and int8), the tokenizer and export.json to --out, after checking the "
        "fp32 graphs against PyTorch. Needs pip install 'mvlt[onnx]'.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the only one)")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 (dynamically quantised) graphs")
    p.set_defaults(run=run_export)


def _index_source(p: argparse.ArgumentParser) -> None:
    """The flags of every command that opens an existing index."""
    p.add_argument("--index", required=True, type=Path, help="index directory (mvlt index --out)")
    p.add_argument("--checkpoint", type=Path, default=None, help="the checkpoint, if it moved since indexing")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="override the index's backend")


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def _runtime(args: argparse.Namespace) -> dict[str, object]:
    """The execution flags as :meth:`CatalogueIndex.load` / ``build`` keywords (checked first)."""
    if args.runtime == "torch" and args.onnx is not None:
        raise UsageError("--onnx DIR is read only with --runtime onnx or onnx-int8")
    if args.runtime != "torch":
        if args.onnx is None:
            raise UsageError(f"--runtime {args.runtime} needs --onnx DIR (made by `mvlt export`)")
        require_onnx()
    return {"device": args.device, "precision": args.precision, "runtime": args.runtime, "onnx": args.onnx}


def run_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    try:
        manifest = export_onnx(args.checkpoint, args.out, quantize=not args.no_int8)
    except (*ERRORS, ImportError) as err:
        return fail("export", err)
    worst = manifest["parity_max_abs_diff"]
    shown = ", ".join(f"{v} {max(d.values()):.1e}" for v, d in worst.items())
    print(
        f"exported the image and text encoders in {manifest['seconds']} s "
        f"(max |diff| vs torch: {shown}): {args.out}"
    )
    return 0


def run_index(args: argparse.Namespace) -> int:
    from .index import CatalogueIndex

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _threads(args)
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        if args.add:
            index = CatalogueIndex.load(args.out, checkpoint=args.checkpoint, **_runtime(args))
            added = index.add(
                args.data,
                split=args.split,
                limit=args.limit,
                progress=progress,
                skip_bad_rows=args.skip_bad_rows,
                image_cache=args.image_cache,
            )
        else:
            if args.checkpoint is None:
                raise UsageError(
                    "--checkpoint is required to build an index (only --add reads it from --out)"
                )
            index = CatalogueIndex.build(
                args.checkpoint,
                args.data,
                args.out,
                split=args.split,
                limit=args.limit,
                backend=args.backend,
                batch_size=args.batch_size,
                progress=progress,
                skip_bad_rows=args.skip_bad_rows,
                image_cache=args.image_cache,
                **_runtime(args),
            )
            added = len(index)
    except (*ERRORS, ImportError) as err:
        return fail("index", err)
    build = index.manifest["builds"][-1]
    rate = build["products_per_s"]
    print(
        f"indexed {added} products ({len(index)} in all) in {build['seconds']:.1f} s"
        + (f", {rate:.1f} products/s" if rate else "")
        + f": {args.out}"
    )
    return 0


def run_search(args: argparse.Namespace) -> int:
    from .index import CatalogueIndex

    _threads(args)
    try:
        if (args.query is None) == (args.image is None):
            raise UsageError('give a query text ("black wool coat") or --image PHOTO, not both')
        if args.image is not None and not args.image.is_file():
            raise FileNotFoundError(f"--image {args.image}: file not found")
        index = CatalogueIndex.load(
            args.index, checkpoint=args.checkpoint, backend=args.backend, **_runtime(args)
        )
        hits = index.search(args.query, args.image, k=args.k, rerank=args.rerank, over=args.over)
    except (*ERRORS, ImportError) as err:
        return fail("search", err)
    if args.json:
        payload = {
            "query": args.query,
            "image": str(args.image) if args.image else None,
            "k": args.k,
            "rerank": args.rerank,
            "results": [h.to_dict() for h in hits],
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return 0
    print(f"{'rank':>4}  {'score':>8}  {'product':<12} {'category':<28} text")
    for h in hits:
        category = f"{h.category} / {h.subcategory}"[:28]
        text = h.text if len(h.text) <= 70 else h.text[:67] + "..."
        print(f"{h.rank:>4}  {h.score:>8.3f}  {h.product_id:<12} {category:<28} {text}")
    return 0


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ``::1``); a name
    or ``0.0.0.0`` may reach other machines, so it counts as public."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key(args: argparse.Namespace) -> str | None:
    """The key from ``--api-key`` or ``--api-key-file`` (first line); refuses a public ``--host``
    without one, and keys that a header cannot carry."""
    key = args.api_key
    if args.api_key_file is not None:
        if not args.api_key_file.is_file():
            raise FileNotFoundError(f"--api-key-file {args.api_key_file}: file not found")
        lines = args.api_key_file.read_text(encoding="utf-8").splitlines()
        key = lines[0].strip() if lines else ""
        if not key:
            raise UsageError(f"--api-key-file {args.api_key_file}: the first line is empty")
    flag = "--api-key-file" if args.api_key_file is not None else "--api-key"
    if key is not None and (len(key) < 16 or not key.isascii() or not key.isprintable() or " " in key):
        raise UsageError(f"{flag}: the key must be at least 16 printable ASCII characters without spaces")
    if key is None and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host} can be reached from other machines: give --api-key KEY or "
            "--api-key-file FILE (or listen on 127.0.0.1)"
        )
    for origin in args.cors_origin:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise UsageError(
                f"--cors-origin {origin}: expected scheme://host[:port], e.g. https://shop.example"
            )
    return key


def tag_vocabulary(specs: list[str]) -> dict[str, list[str]] | None:
    """``--zero-shot`` of ``mvlt serve``: labels given, or a file (a server reads no catalogue columns)."""
    from ..tagging import parse_specs

    if not specs:
        return None
    spec = parse_specs(specs)
    if spec.columns:
        raise UsageError(
            f"--zero-shot {','.join(spec.columns)}: the server reads no catalogue columns; give the labels "
            "(colour=black,white) or a .yaml/.json file"
        )
    return spec.labels


def run_serve(args: argparse.Namespace) -> int:
    """Check every flag and take the port before loading the index (seconds to minutes), so that a
    mistake fails at once; then serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _threads(args)
    try:
        key = api_key(args)
        vocabulary = tag_vocabulary(args.zero_shot)
        _runtime(args)
    except (*ERRORS, ImportError) as err:
        return fail("serve", err)
    try:
        from .serve import Limits, create_app, listen, run_server
    except ImportError as err:
        return fail("serve", ImportError(f"{err}: the server needs pip install 'mvlt[search]'"))
    from .index import CatalogueIndex

    try:
        sock = listen(args.host, args.port)
    except OSError as err:
        return fail("serve", err)
    try:
        index = CatalogueIndex.load(
            args.index, checkpoint=args.checkpoint, backend=args.backend, **_runtime(args)
        )
        limits = Limits(
            max_concurrent=args.max_concurrent,
            max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
            upload_timeout_s=args.upload_timeout,
        )
        app = create_app(
            index, limits=limits, default_rerank=args.rerank, api_key=key, cors_origins=args.cors_origin,
            tag_vocabulary=vocabulary,
        )  # fmt: skip
    except (*ERRORS, ImportError) as err:
        sock.close()
        return fail("serve", err)
    run_server(app, sock)
    return 0
