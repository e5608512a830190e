"""Report documents the way a person meets them: `hemascope report` on a real run, the HTML
opened in real headless Chromium, the PDF turned into a picture (pdftoppm) and read back
(pdftotext), the FHIR bundle validated; and each bad input a single line with nothing
written."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from edge.core.errors import HemascopeError
from edge.pipeline.runner import Runner
from edge.storage.store import Store
from tests.conftest import ROOT, needs_datasets, run_cli
from tests.helpers.browser import chromium_page
from tests.helpers.slides import bccd_slide, slide_without_white_cells

SAMPLE = "S-0042"
DASH = "\N{EN DASH}"  # between the ends of an interval


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data dir, JSON report) of `hemascope run` with the differential and the ALL subtype on
    BCCD fields, a duplicate, a blank frame and a truncated file."""
    tmp = tmp_path_factory.mktemp("reports")
    profile = tmp / "p.toml"
    # a clinic that files the report in the patient record keeps the typed ids (docs/privacy.md)
    profile.write_text("[classifiers]\nwbc = true\nall_subtype = true\n"
                       "[privacy]\nkeep_clear_ids = true\n")
    slide = bccd_slide(tmp / "slide", needs_datasets())
    data = tmp / "data"
    done = run_cli("run", "-p", str(profile), "-s", f"folder:{slide}", "--data-dir", str(data),
                   "--sample", SAMPLE, "--operator", "amina", "--json", str(tmp / "run.json"))
    assert done.returncode == 0, done.stderr
    return data, json.loads((tmp / "run.json").read_text())


def _one_line_error(result, *needles: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def _look_at(html: Path, screenshot: Path) -> tuple[str, list[str]]:
    """The page's text as Chromium renders it, and every URL it asked for; keeps a screenshot.
    Fails on any console error."""
    with chromium_page(1100, 900) as browser:
        requests: list[str] = []
        browser.page.on("request", lambda r: requests.append(r.url))
        browser.page.goto(html.as_uri())
        browser.page.wait_for_load_state("load")
        browser.page.screenshot(path=str(screenshot), full_page=True)
        text = browser.page.inner_text("body")
        images = browser.page.eval_on_selector_all(
            "img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        assert browser.errors == []
    assert images and all(images)  # every inlined picture decoded
    return text, requests


def test_html_pdf_and_fhir_of_a_real_run(run, tmp_path):
    data, summary = run
    sid = summary["session_id"]
    html, pdf, fhir = tmp_path / "r.html", tmp_path / "r.pdf", tmp_path / "r.fhir.json"
    done = run_cli("report", sid[:8], "--data-dir", str(data), "--html", str(html),
                   "--pdf", str(pdf), "--fhir", str(fhir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-3:] == [
        f"HTML report: {html}", f"PDF report: {pdf}", f"FHIR R4 bundle: {fhir}"]
    assert not list(Path.cwd().glob(f"{sid}.json"))  # documents asked: no default JSON
    assert html.stat().st_size < 3_000_000

    text, requests = _look_at(html, tmp_path / "report.png")
    assert cv2.imread(str(tmp_path / "report.png")).shape[1] == 1100  # the kept artefact
    assert requests[0] == html.as_uri()
    assert all(u.startswith("data:") for u in requests[1:])  # nothing fetched from anywhere
    diff = summary["differential"]
    top = max(diff["counts"], key=diff["counts"].get)
    low, high = diff["interval_95"][top]
    for needle in (SAMPLE, "amina", str(summary["totals"]["RBC"]),
                   f"{diff['percent'][top]:.1f}", f"{low:.1f}{DASH}{high:.1f}",
                   summary["model"]["sha256"], "Not reviewed", "duplicate of accepted field"):
        assert needle in text, needle

    page1 = tmp_path / "page"
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "1", str(pdf), str(page1)],
                   check=True)
    picture = cv2.imread(str(next(tmp_path.glob("page*.png"))))
    assert picture is not None and picture.std() > 10  # a printed page, not a blank one
    printed = " ".join(subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                                      capture_output=True, text=True).stdout.split())
    for needle in (SAMPLE, f"RBC {summary['totals']['RBC']}",
                   f"{top} {diff['counts'][top]} {diff['percent'][top]:.1f}",
                   f"{low:.1f}{DASH}{high:.1f}", "Not reviewed"):
        assert needle in printed, needle

    bundle = json.loads(fhir.read_text())
    pytest.importorskip("fhir.resources.R4B.bundle").Bundle.model_validate(bundle)
    report = next(e["resource"] for e in bundle["entry"]
                  if e["resource"]["resourceType"] == "DiagnosticReport")
    assert base64.b64decode(report["presentedForm"][0]["data"]) == pdf.read_bytes()


def test_without_chromium_the_pdf_is_one_line_and_nothing_is_written(run, tmp_path):
    data, summary = run
    done = run_cli("report", summary["session_id"], "--data-dir", str(data),
                   "--html", str(tmp_path / "r.html"), "--pdf", str(tmp_path / "r.pdf"),
                   env={"PATH": str(tmp_path)})
    _one_line_error(done, "chromium is not installed", "apt install chromium")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_is_one_line_and_nothing_is_written(run, tmp_path):
    data, summary = run
    (tmp_path / "blocker").write_text("")
    done = run_cli("report", summary["session_id"], "--data-dir", str(data),
                   "--html", str(tmp_path / "r.html"),
                   "--fhir", str(tmp_path / "blocker" / "r.fhir.json"))
    _one_line_error(done, "cannot write the FHIR R4 bundle", "nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_running_session_is_refused(tmp_path):
    data = tmp_path / "data"
    store = Store.open(data)  # this test process owns the session: it is really running
    sid = store.start_session(sample_id="S-RUN", operator=None, profile_name="p",
                              profile_json="{}", source="camera:0", model_file="m.onnx",
                              model_sha256="0" * 64, classes=["WBC", "RBC", "Platelets"],
                              version="0")
    done = run_cli("report", sid, "--data-dir", str(data), "--html", str(tmp_path / "r.html"))
    _one_line_error(done, "still running", "nothing was written")
    assert not (tmp_path / "r.html").exists()


def test_interrupted_and_white_cell_free_sessions_are_reported_and_marked(tmp_path):
    from edge.capture.folder import FolderSource
    from edge.config import Profile
    from edge.inference.detector import Detector
    from tests.conftest import BUNDLED_MODEL

    class Unplugged:
        """Two fields without white cells, then the camera goes."""

        name = "camera:0"

        def frames(self):
            yield from list(FolderSource(slide_without_white_cells(tmp_path / "f", 2)).frames())
            raise HemascopeError("camera 0 stopped delivering frames", "check the cable")

    data = tmp_path / "data"
    store = Store.open(data)
    with pytest.raises(HemascopeError):
        Runner(Profile(), store, Detector(BUNDLED_MODEL)).run(Unplugged(), "S-CUT")
    sid = store.sessions()[0].id
    html = tmp_path / "r.html"
    done = run_cli("report", sid, "--data-dir", str(data), "--html", str(html))
    assert done.returncode == 0, done.stderr
    assert "note: session" in done.stderr and "was interrupted" in done.stderr
    assert "note: no white cells were found in the 2 counted fields" in done.stderr
    text, _ = _look_at(html, tmp_path / "interrupted.png")
    assert "Interrupted: this session stopped early" in text
    assert "No white cells were found in the 2 counted fields" in text


def test_the_readme_first_command_ends_with_the_html_report_of_the_demo(tmp_path):
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.+?)\n```", readme, re.S).group(1).strip()
    command = shlex.split(first.split("&&")[-1])
    assert Path(command[0]).name == "hemascope" and command[1] == "run"
    done = run_cli(*command[1:], "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("HTML report: "), done.stdout
    report = Path(last.removeprefix("HTML report: "))
    assert report.is_absolute() and report.is_file() and report.parent == tmp_path
    text, requests = _look_at(report, tmp_path / "demo.png")
    assert "Demonstration: these fields are synthetic" in text
    assert all(u.startswith("data:") for u in requests[1:])
    shutil.rmtree(tmp_path / "data")
