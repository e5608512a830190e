"""Make docs/img/review-page.png: the review page of a demo session, as a technician sees it.

A real `hemascope run` with the white-cell differential on the first FIELDS images of a
folder (default: BCCD), then the review page served in-process and opened in headless
Chromium (Debian's `chromium`, driven by Playwright: the `dev` extra), a few verdicts given
from the keyboard, and the window saved as a palette PNG (Pillow) under ~300 KB.

    .venv/bin/python scripts/review_page_screenshot.py            # writes docs/img/review-page.png
    .venv/bin/python scripts/review_page_screenshot.py --images DIR --fields 20 --out x.png

With `--speed JSON` it then confirms every remaining cell with Enter, as fast as Playwright
presses keys, and writes how long the page and the store took for them (each verdict is one
request and one SQLite transaction): what the page adds to a technician's pace.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a promise, not wait_for_function: the page's Content-Security-Policy forbids eval
VISIBLE_IMAGES_LOADED = ("() => Promise.all([...document.images]"
                         ".filter((i) => i.getBoundingClientRect().top < innerHeight)"
                         ".map((i) => i.complete ? 0 : new Promise((r) => {"
                         " i.onload = i.onerror = r; })))")
BCCD = ROOT.parent / "shared" / "datasets" / "detection" / "bccd" / "JPEGImages"


def demo_session(images: Path, fields: int, work: Path) -> tuple[Path, str]:
    """(data dir, session id) of a real run on the first `fields` images of `images`."""
    src = work / "slide"
    src.mkdir()
    for path in sorted(images.glob("*.jpg"))[:fields]:
        shutil.copy(path, src / path.name)
    profile = work / "demo.toml"
    profile.write_text("[classifiers]\nwbc = true\n")
    data = work / "data"
    subprocess.run([sys.executable, "-m", "edge", "run", "-p", str(profile), "-s",
                    f"folder:{src}", "--data-dir", str(data), "--sample", "S-0042",
                    "--operator", "amina"], cwd=ROOT, check=True, capture_output=True)
    from edge.storage.store import Store

    store = Store.open(data)
    sid = store.sessions()[0].id
    store.close()
    return data, sid


def screenshot(data: Path, sid: str, out: Path, width: int, height: int,
               speed: Path | None = None) -> int:
    """Serve the review page, give a few verdicts from the keyboard, save the window (and,
    with `speed`, time confirming every other cell); returns the PNG's size in bytes."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from edge.site.review_page import ReviewServer, ReviewSession
    from edge.storage.store import Store

    store = Store.open(data)
    review = ReviewSession(store, sid, "amina")
    server = ReviewServer(review)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        sys.exit("Debian's chromium is needed (apt-get install chromium)")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(server.url)
            page.wait_for_selector("figure.tile.current")
            page.evaluate(VISIBLE_IMAGES_LOADED)
            for key in ("Enter", "Enter", "5", "Enter", "ArrowRight", "6"):
                page.keyboard.press(key)
            page.wait_for_selector('#progress[data-reviewed="5"]')
            page.evaluate("window.scrollTo(0, 0)")
            png = page.screenshot()
            if speed is not None:
                measure_speed(page, len(review.model), speed)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
        store.close()  # the demo data dir is thrown away: nothing is queued
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out.stat().st_size


def measure_speed(page, cells: int, out: Path) -> None:
    """Enter on every cell not yet reviewed, timed until the page shows them all stored."""
    page.click("figure.tile")  # back to the first cell
    presses = cells - int(page.get_attribute("#progress", "data-reviewed"))
    start = time.perf_counter()
    for _ in range(cells):
        page.keyboard.press("Enter")
    page.wait_for_selector(f'#progress[data-reviewed="{cells}"]', timeout=600_000)
    seconds = time.perf_counter() - start
    record = {"what": "review page: Enter on every cell of a real session, as fast as keys "
                      "are pressed; each verdict one request and one SQLite transaction",
              "cells": cells, "key_presses": cells, "newly_reviewed": presses,
              "seconds": round(seconds, 2), "ms_per_key": round(1000 * seconds / cells, 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
              "command": "python " + " ".join(sys.argv)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=BCCD, help="folder of field images")
    parser.add_argument("--fields", type=int, default=24, help="how many fields to run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "review-page.png")
    parser.add_argument("--size", default="1280x860", help="window WIDTHxHEIGHT")
    parser.add_argument("--speed", type=Path, help="also time Enter on every cell, to JSON")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data, sid = demo_session(args.images, args.fields, Path(tmp))
        size = screenshot(data, sid, args.out, width, height, args.speed)
    print(f"{args.out}: {size // 1024} KB, session {sid[:12]} ({args.fields} fields of "
          f"{args.images})")


if __name__ == "__main__":
    main()
