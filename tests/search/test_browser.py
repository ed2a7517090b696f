"""The search page in a real browser: Debian's chromium, headless, driven by Playwright.

It types a query, waits for result cards whose images loaded and show their tags, uploads a
photo, and saves a screenshot. No browser is downloaded: Playwright drives ``/usr/bin/chromium``
(``apt-get install chromium``; ``.ci/run`` installs it). Outside CI a missing browser or Playwright
skips with how to install it; under ``CI=true`` it fails, so CI cannot pass by testing less.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mvlt.search import CatalogueIndex

CHROMIUM = Path(os.environ.get("MVLT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _require(ok: bool, message: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(index: CatalogueIndex) -> Iterator[str]:
    """The app under uvicorn on a free localhost port, in a background thread."""
    pytest.importorskip("uvicorn")
    from mvlt.search.serve import background_server, create_app

    vocabulary = {"colour": ["red", "blue", "black"], "pattern": ["solid", "striped"]}
    with background_server(create_app(index, default_rerank=8, tag_vocabulary=vocabulary)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require(CHROMIUM.is_file(), f"{CHROMIUM} not found: apt-get install chromium (Debian's browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(
            False, "playwright is not installed: pip install playwright (no `playwright install` needed)"
        )
        raise
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


LOADED = "imgs => imgs.length >= 4 && imgs.slice(0, 4).every(i => i.complete && i.naturalWidth > 0)"
"""The first four result images have loaded (Playwright's string predicates would need the
'unsafe-eval' that the page's Content-Security-Policy rightly refuses)."""


def wait_until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_search_page_text_then_photo(server: str, browser, index: CatalogueIndex, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server + "/")
    page.locator("#about", has_text="products").wait_for()
    assert f"{len(index)} products" in page.text_content("#about")

    page.click("#search-button")  # nothing typed: a message, no request
    assert "Type a description" in page.text_content("#status-text")

    page.fill("#q", "a red shirt with long sleeves")
    page.click("#search-button")
    page.locator(".card").nth(3).wait_for()
    wait_until(lambda: page.eval_on_selector_all(".card img", LOADED))
    status = page.text_content("#status-text")
    assert "results for “a red shirt with long sleeves”" in status and "top 8 re-ranked" in status
    assert " ms (search " in status
    expected = index.search("a red shirt with long sleeves", k=20, rerank=8)
    ids = page.eval_on_selector_all(".card .pid", "els => els.map(e => e.textContent)")
    assert ids == [f"#{h.rank} · {h.product_id}" for h in expected]
    assert page.text_content(".card .category") == f"{expected[0].category} / {expected[0].subcategory}"
    assert page.locator(".card .badge").count() == 8  # the ITM re-ranked cards are marked
    chips = page.eval_on_selector_all(".card:first-child .tag", "els => els.map(e => e.textContent)")
    assert [c.split(": ")[0] for c in chips] == ["colour", "pattern"]
    assert chips[0].split(": ")[1] in {"red", "blue", "black"}
    assert "(zero-shot)" in page.get_attribute(".card:first-child .tag", "title")

    photo = index.image_path(5)
    page.set_input_files("#photo", str(photo))
    page.locator("#status-text", has_text="the photo").wait_for()
    wait_until(lambda: page.eval_on_selector_all(".card img", LOADED))
    assert page.is_visible("#query-photo")
    assert f"the photo {photo.name}" in page.text_content("#status-text")

    shot = tmp_path / "search.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert problems == []
    page.close()
