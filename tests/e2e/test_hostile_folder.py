"""Hostile files in a folder session through the real CLI (issue #20, findings 4, 5 and 9):
each is skipped with its reason, the session goes on, and memory stays bounded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers.images import hostile_header, png

PEAK_RSS_MB = 300  # issue #20: the runner's bound for any input file up to 50 MB


# A fresh interpreter runs the command and reports its peak RSS: on Linux a child's
# ru_maxrss starts from the RSS of the process that spawned it, here pytest's.
MEASURE = ("import os, subprocess, sys\n"
           "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
           "_, status, usage = os.wait4(p.pid, 0)\n"
           "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n")


def _run_measured(args: list[str], timeout: float = 300) -> tuple[int, float]:
    """Run `hemascope ARGS`; its exit code and its own peak RSS (MB), killed on timeout."""
    proc = subprocess.Popen([sys.executable, "-c", MEASURE, sys.executable, "-m", "edge",
                             *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"hemascope run still going after {timeout} s") from None
    code, rss_kb = map(int, out.split())
    return code, rss_kb / 1024


def _report(tmp_path: Path, folder: Path) -> tuple[int, float, dict]:
    code, rss = _run_measured(["run", "-s", f"folder:{folder}", "--data-dir",
                               str(tmp_path / "data"), "--json", str(tmp_path / "r.json")])
    return code, rss, json.loads((tmp_path / "r.json").read_text()) if code == 0 else {}


def test_one_bad_file_does_not_end_the_session(tmp_path, datasets):
    """Finding 5: a 69-byte PNG claiming 65535x65535, third of five, ended the session with
    a traceback and the last two files were never processed."""
    real = sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:4]
    folder = tmp_path / "slide"
    folder.mkdir()
    for i, path in zip((1, 2, 4, 5), real, strict=True):
        shutil.copy(path, folder / f"f{i}.jpg")
    (folder / "f3.png").write_bytes(hostile_header())
    code, _, report = _report(tmp_path, folder)
    assert code == 0
    fields = {Path(f["origin"]).name: f for f in report["fields"]}
    assert sorted(fields) == ["f1.jpg", "f2.jpg", "f3.png", "f4.jpg", "f5.jpg"]
    assert report["fields_counted"] + report["fields_rejected"] == 4
    assert report["fields_skipped"] == 1 and fields["f3.png"]["status"] == "skipped"
    assert "65535x65535 is 4294.8 megapixels, over the 25 megapixel limit" in \
        fields["f3.png"]["reason"]


def test_a_hostile_folder_is_run_in_bounded_memory(tmp_path, datasets):
    """Finding 4 end to end: thin, huge and endless files beside two real fields; no hang,
    every hostile file skipped with its reason, peak RSS under the issue's bound."""
    real = sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:2]
    folder = tmp_path / "slide"
    folder.mkdir()
    for path in real:
        shutil.copy(path, folder / path.name)
    (folder / "h_1x5000.png").write_bytes(png(1, 5000))
    (folder / "h_1x20000.png").write_bytes(png(1, 20000))
    (folder / "h_30000.png").write_bytes(png(30000, 30000, b""))
    (folder / "h_65535.png").write_bytes(hostile_header())
    (folder / "h_zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(folder / "h_fifo.jpg")
    data = real[0].read_bytes()
    (folder / "h_cut.jpg").write_bytes(data[:int(len(data) * 0.6)] + b"\xff\xd9")
    code, rss, report = _report(tmp_path, folder)
    assert code == 0
    skipped = [f for f in report["fields"] if f["status"] == "skipped"]
    assert sorted(Path(f["origin"]).name for f in skipped) == sorted(
        p.name for p in folder.glob("h_*"))
    assert all(f["reason"].startswith("unreadable image: ") for f in skipped)
    assert report["fields_counted"] + report["fields_rejected"] == 2
    assert rss < PEAK_RSS_MB, f"peak RSS {rss:.0f} MB"


def test_camera_size_fields_are_decoded_smaller_in_bounded_memory(tmp_path, datasets):
    """A 24-megapixel JPEG and a 20-megapixel PNG (sensor-like noise, as a camera writes
    them): decoded at 1/4 and 1/2 of their width and height (`source.max_decoded_megapixels`
    = 5), counted, and the run's peak RSS under the issue's bound (a 24 MP JPEG alone took
    328 MB)."""
    import cv2
    import numpy as np

    field = cv2.imread(str(sorted((datasets / "detection" / "bccd" / "JPEGImages")
                                  .glob("*.jpg"))[0]))
    rng = np.random.default_rng(0)
    folder = tmp_path / "camera"
    folder.mkdir()
    for name, (width, height) in (("a-24mp.jpg", (6000, 4000)), ("b-20mp.png", (5472, 3648))):
        image = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith(".jpg") else \
            [cv2.IMWRITE_PNG_COMPRESSION, 1]
        assert cv2.imwrite(str(folder / name), image, params)
        del image
    code, rss, report = _report(tmp_path, folder)
    assert code == 0
    from edge.storage.store import Store

    stored = Store.open(tmp_path / "data").fields(report["session_id"])
    sizes = {Path(f.origin).name: (f.width, f.height) for f in stored}
    assert sizes == {"a-24mp.jpg": (1500, 1000), "b-20mp.png": (2736, 1824)}
    assert report["fields_counted"] >= 1
    assert rss < PEAK_RSS_MB, f"peak RSS {rss:.0f} MB"
