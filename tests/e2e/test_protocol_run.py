"""The session protocol in real runs, with the bundled detector and differential: a
differential stops at the first counted field that brings its classified white cells to the
target, rejected and unreadable fields never count (towards the target or the field limit),
and the terminal shows the progress live."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.folder import FolderSource
from edge.config import Profile
from edge.core.errors import HemascopeError
from edge.core.labels import FieldStatus
from edge.inference.detector import Detector
from edge.pipeline.runner import Runner
from edge.pipeline.second_stage import FieldClassifiers
from edge.report.summary import session_summary
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL, ROOT, needs_datasets

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    """40 fields of four PBC white cells each (2x2 mosaics of crops at their original 360 px),
    with fields that must never count mixed in: an exact re-capture after every fifth field
    (rejected as a duplicate after the detector has seen its white cells), a blank grey frame
    (rejected by the pixel checks) and a truncated file (unreadable)."""
    pbc = needs_datasets() / "classification" / "pbc-8class"
    files = {c.name: sorted(c.iterdir()) for c in pbc.iterdir() if c.name != "platelet"}
    rng = np.random.default_rng(19)
    folder = tmp_path_factory.mktemp("protocol") / "slide"
    folder.mkdir()
    for i in range(40):
        tiles = []
        for _ in range(4):
            pool = files[list(files)[rng.integers(len(files))]]
            tiles.append(cv2.resize(cv2.imread(str(pool[rng.integers(len(pool))])), (360, 360)))
        field = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
        cv2.imwrite(str(folder / f"f{i:03d}.jpg"), field, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if i % 5 == 1:
            shutil.copy(folder / f"f{i:03d}.jpg", folder / f"f{i:03d}b-again.jpg")
    cv2.imwrite(str(folder / "f002c-blank.png"), np.full((720, 720, 3), 200, np.uint8))
    (folder / "f003c-broken.jpg").write_bytes((folder / "f003.jpg").read_bytes()[:3000])
    return folder


def _profile(tmp: Path, **protocol: object) -> Path:
    path = tmp / "p.toml"
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in protocol.items())
    path.write_text(f"[classifiers]\nwbc = true\n\n[protocol]\n{lines}")
    return path


def _run_on_a_terminal(*args: str) -> tuple[int, str]:
    """`hemascope ARGS` with stdout and stderr on a pseudo-terminal, as an operator sees it;
    returns the exit code and everything written, escape sequences removed."""
    parent, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "edge", *args], stdin=child, stdout=child,
                            stderr=child, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(parent)
    return proc.wait(timeout=60), ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def _white_per_field(data: Path, session_id: str) -> Counter[int]:
    return Counter(c.field_idx for c in Store.open(data).classified_cells(session_id)
                   if c.label != "platelet")


def test_a_differential_stops_at_the_target_and_shows_its_progress(tmp_path, slide):
    data, report_path = tmp_path / "data", tmp_path / "r.json"
    code, screen = _run_on_a_terminal(
        "run", "-p", str(_profile(tmp_path, mode="differential", white_cells=100)),
        "-s", f"folder:{slide}", "--data-dir", str(data), "--json", str(report_path))
    assert code == 0, screen
    report = json.loads(report_path.read_text())
    fields, white = report["fields"], _white_per_field(data, report["session_id"])
    # the stop: the last stored field is counted and the first to bring the count to 100
    counted = [f for f in fields if f["status"] == FieldStatus.COUNTED]
    running = np.cumsum([white[f["idx"]] for f in counted])
    assert fields[-1]["status"] == FieldStatus.COUNTED
    assert running[-2] < 100 <= running[-1]
    assert len(fields) < len(list(slide.iterdir()))  # the rest of the slide was not read
    # rejected and unreadable fields before the stop, none of them counted
    statuses = Counter(f["status"] for f in fields)
    assert statuses[FieldStatus.REJECTED] >= 3 and statuses[FieldStatus.SKIPPED] == 1
    again = [f for f in fields if "again" in f["origin"]]
    assert again and all("duplicate" in f["reason"] for f in again)
    originals = {f["origin"].replace("b-again", ""): f for f in counted}
    assert all(white[originals[f["origin"].replace("b-again", "")]["idx"]] > 0 for f in again)
    assert all(white[f["idx"]] == 0 for f in fields if f["status"] != FieldStatus.COUNTED)
    protocol = report["protocol"]
    assert (protocol["stop"], protocol["white_cells"], protocol["fields"]) == (
        "target reached", int(running[-1]), len(counted))
    assert protocol["fields_not_counted"] == len(fields) - len(counted)
    assert report["differential"]["classified"] >= protocol["white_cells"]
    # live progress, then the line the session ended on
    live = re.findall(r"white cells (\d+)/100 · fields (\d+)(?: · rejected \d+)? · about \d+ "
                      r"more fields?", screen)
    assert live, screen
    assert all(int(w) < 100 and int(n) <= len(counted) for w, n in live)
    assert f"protocol differential: white cells {int(running[-1])}/100 · fields " \
           f"{len(counted)} · rejected {len(fields) - len(counted)} · target reached" in screen
    assert "flags:" in screen and "estimates" in screen


def test_the_field_limit_counts_accepted_fields_only(tmp_path, slide):
    profile = Profile.model_validate({"classifiers": {"wbc": True}, "protocol": {
        "mode": "differential", "white_cells": 400, "max_fields": 4}})
    store = Store.open(tmp_path)
    detector = Detector(BUNDLED_MODEL, threads=1)
    seen = []
    classifiers = FieldClassifiers(profile.classifiers, detector.classes)
    sid = Runner(profile, store, detector, classifiers).run(
        FolderSource(slide), "S", on_field=lambda _, outcome: seen.append(outcome))
    stored = store.fields(sid)
    counted = [f for f in stored if f.status is FieldStatus.COUNTED]
    assert len(counted) == 4 and stored[-1].status is FieldStatus.COUNTED
    assert len(stored) > 4  # rejected and unreadable fields came before the limit
    assert [o.progress.fields for o in seen] == [
        sum(o.status is FieldStatus.COUNTED for o in seen[:i + 1]) for i in range(len(seen))]
    assert seen[-1].progress.stop and str(seen[-1].progress.reason) == "field limit reached"
    summary = session_summary(store, sid)
    assert summary["protocol"]["stop"] == "field limit reached"
    assert summary["protocol"]["white_cells"] == sum(_white_per_field(tmp_path, sid).values())


def test_a_differential_without_the_white_cell_classifier_is_refused(tmp_path):
    profile = Profile.model_validate({"classifiers": {"wbc": True},
                                      "protocol": {"mode": "differential"}})
    with pytest.raises(HemascopeError, match="white-cell classifier"):
        Runner(profile, Store.open(tmp_path), Detector(BUNDLED_MODEL, threads=1), None)
