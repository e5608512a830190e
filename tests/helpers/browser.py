"""A real headless Chromium (Debian's `chromium`, driven by Playwright without its own browser
download) for tests that look at pages the way a person does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class BrowserPage:
    """A page and every console error and uncaught exception it produced."""

    page: Any
    errors: list[str] = field(default_factory=list)


@contextmanager
def chromium_page(width: int = 1280, height: int = 900, **options: Any) -> Iterator[BrowserPage]:
    """Open one page in headless Chromium (`options` as for Playwright's new_page, e.g.
    http_credentials); skip the test when Chromium or Playwright is absent."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, **options)
            seen = BrowserPage(page)
            page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: seen.errors.append(str(e)))
            yield seen
        finally:
            browser.close()
