"""The PDF report: the HTML report printed by headless Chromium (Debian's `chromium`), so the
PDF is the same document as the HTML, laid out by its print styles. Chromium runs offline: a
throwaway profile, no background networking, every host name unresolvable."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edge.core.errors import HemascopeError

BROWSERS = ("chromium", "chromium-browser")
TIMEOUT_S = 180  # a Raspberry Pi 4 starts Chromium in a few seconds; this is a hang guard


def chromium() -> str:
    """The Chromium executable; an error naming the package to install when there is none."""
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    raise HemascopeError("cannot make the PDF report: chromium is not installed",
                         "install it (apt install chromium), or leave out --pdf; nothing was "
                         "written")


def html_to_pdf(html: str, executable: str | None = None) -> bytes:
    """Print `html` to PDF with headless Chromium (A4, the page's print styles, no header or
    footer lines) and return the PDF's bytes."""
    exe = executable or chromium()
    with tempfile.TemporaryDirectory(prefix="hemascope-pdf-") as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        args = [exe, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={Path(tmp) / 'profile'}", "--no-pdf-header-footer",
                f"--print-to-pdf={pdf}", page.as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to start as root otherwise
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise HemascopeError(f"chromium did not finish printing the PDF in {TIMEOUT_S} s",
                                 "check that `chromium --headless` runs on this device; "
                                 "nothing was written") from None
        data = pdf.read_bytes() if pdf.is_file() else b""
        if done.returncode != 0 or not data.startswith(b"%PDF"):
            last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()),
                        f"exit code {done.returncode}")
            raise HemascopeError(f"chromium could not print the PDF ({last.strip()[:200]})",
                                 "check that `chromium --headless` runs on this device; "
                                 "nothing was written")
        return data
