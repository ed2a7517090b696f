"""The search page as a person sees it: serve an index, type a query and drop a photo in Debian's
headless chromium (Playwright, no browser download), time each round trip, save screenshots.

    .venv/bin/python benchmarks/search_page.py [--index runs/hm-index] [--query TEXT] [--photo PHOTO]
                                               [--out docs/images/search.png]

Without ``--index`` it first indexes a catalogue's test split (``--data``; default: the synthetic
catalogue of ``make demo``, 3,000 products, searched with ``runs/demo/model``) into a temporary
folder. The README's screenshot is made this way: synthetic products, no third-party photos.
The photo screenshot goes next to ``--out`` (``*-photo.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HM_MANIFEST
from mvlt.data import SyntheticCatalogue
from mvlt.search import CatalogueIndex
from mvlt.search.serve import background_server, create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", type=Path, default=None, help="an index (default: build one of the test split)")
    p.add_argument("--checkpoint", type=Path, default=Path("runs/demo/model"))
    p.add_argument("--data", default="synthetic", help=f"a catalogue, e.g. {HM_MANIFEST}")
    p.add_argument("--products", type=int, default=3000, help="synthetic catalogue size (as make demo)")
    p.add_argument("--query", default="black gilet with yellow polka dots")
    p.add_argument("--photo", type=Path, default=None, help="default: the first result's own photo")
    p.add_argument("--rerank", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("docs/images/search.png"))
    return p.parse_args(argv)


def round_trip(page, action, label: str) -> float:
    """Milliseconds from the action to the status line naming the new results."""
    start = time.perf_counter()
    action()
    page.locator("#status-text", has_text=label).wait_for()
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.index
        if path is None:
            path = Path(tmp) / "index"
            data = args.data
            if data == "synthetic":  # drawn at 256 px for the page; the model sees them at its size
                data = SyntheticCatalogue(split="test", num_products=args.products, image_size=256)
            CatalogueIndex.build(args.checkpoint, data, path, split="test")
        index = CatalogueIndex.load(path)
        photo = args.photo or index.image_path(index.search(args.query, k=1)[0].row)
        app = create_app(index, default_rerank=args.rerank)
        with background_server(app) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url + "/")
            page.locator("#about", has_text="products").wait_for()
            page.fill("#q", args.query)
            text_ms = round_trip(page, lambda: page.click("#search-button"), "results for")
            page.wait_for_timeout(500)  # let the images paint
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            photo_ms = round_trip(page, lambda: page.set_input_files("#photo", str(photo)), "the photo")
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out.with_name(args.out.stem + "-photo.png")))
            status = page.text_content("#status-text")
            browser.close()
    print(
        json.dumps(
            {
                "products": len(index),
                "text_round_trip_ms": round(text_ms, 1),
                "photo_round_trip_ms": round(photo_ms, 1),
                "last_status": status,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
