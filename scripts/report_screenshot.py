"""Screenshot of the HTML report of the README's demo session, for docs/img/report.png.

Runs the README's first command (`hemascope run --html ...`, synthetic fields, bundled model)
in a throwaway data dir, opens the report in headless Chromium (Debian's `chromium`, driven by
Playwright from the `dev` extra) and keeps the top of the page, scaled to `--width` pixels and
32 levels per colour channel:

    python scripts/report_screenshot.py --out docs/img/report.png

Prints the image's path, size and the report's size as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
from playwright.sync_api import sync_playwright

VIEWPORT = (1100, 1500)  # CSS pixels kept: the header down to the first evidence pictures
LEVEL_STEP = 8  # 32 levels per colour channel: invisible here, and PNG compresses it twice as well


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/report.png"))
    parser.add_argument("--width", type=int, default=820, help="width of the PNG, pixels")
    args = parser.parse_args()
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        sys.exit("chromium is not installed: apt install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "demo-report.html"
        subprocess.run([sys.executable, "-m", "edge", "run", "--html", str(report),
                        "--data-dir", str(Path(tmp) / "data")], check=True,
                       stdout=subprocess.DEVNULL)
        shot = Path(tmp) / "shot.png"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]})
            page.goto(report.as_uri())
            page.screenshot(path=str(shot))
            browser.close()
        image = cv2.imread(str(shot))
        scale = args.width / image.shape[1]
        image = cv2.resize(image, (args.width, round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
        image = image // LEVEL_STEP * LEVEL_STEP + LEVEL_STEP // 2  # half the PNG's size
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(json.dumps({"png": str(args.out), "png_bytes": args.out.stat().st_size,
                          "png_size": [image.shape[1], image.shape[0]],
                          "report_bytes": report.stat().st_size}))


if __name__ == "__main__":
    main()
