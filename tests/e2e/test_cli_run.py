"""The device runner end to end through the real CLI, with the bundled model."""

import itertools
import json
import re
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.labels import FieldStatus
from edge.inference.detector import Detector
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL, ROOT, needs_datasets, run_cli


def _check_totals(data_dir: Path, report: dict) -> None:
    """Totals in SQLite = per-field sums = the JSON report."""
    store = Store.open(data_dir)
    sid = report["session_id"]
    per_field = store.field_counts(sid)
    sums = {c: sum(f.get(c, 0) for f in per_field.values()) for c in report["classes"]}
    assert store.totals(sid) == sums == report["totals"]
    assert sum(1 for f in store.fields(sid) if f.status == "counted") == \
        report["fields_counted"]


class TimedDetector(Detector):
    """The bundled detector, recording each call's start, end and thread."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.runs: list[tuple[float, float, threading.Thread]] = []

    def detect(self, prepared):
        t0 = time.perf_counter()
        try:
            return super().detect(prepared)
        finally:
            self.runs.append((t0, time.perf_counter(), threading.current_thread()))


def test_synthetic_run_prints_counts_and_stores_evidence(tmp_path):
    result = run_cli("run", "--data-dir", str(tmp_path), "--sample", "S-1",
                     "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["fields_counted"] == 20 and report["status"] == "finished"
    assert report["totals"]["RBC"] > 20 * 5
    assert re.search(rf"RBC\s*│\s*{report['totals']['RBC']}\s*│", result.stdout), result.stdout
    assert "true total (synthetic)" in result.stdout  # the demo shows the renderer's truth
    assert report["model"]["sha256"] == json.loads(
        BUNDLED_MODEL.with_suffix(".json").read_text())["sha256"]
    evidence = [tmp_path / f["evidence"] for f in report["fields"]]
    assert all(cv2.imread(str(p)) is not None for p in evidence)
    _check_totals(tmp_path, report)


def test_bad_images_are_skipped_recorded_and_the_rest_counted(tmp_path, datasets):
    src = tmp_path / "slide"
    src.mkdir()
    images = sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:3]
    for p in images:
        shutil.copy(p, src / p.name)
    (src / "zz_truncated.jpg").write_bytes(images[0].read_bytes()[:5000])
    (src / "zz_corrupt.png").write_bytes(b"\x89PNG broken")
    data = tmp_path / "data"
    result = run_cli("run", "-s", f"folder:{src}", "--data-dir", str(data),
                     "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["fields_counted"], report["fields_skipped"]) == (3, 2)
    skipped = {Path(f["origin"]).name: f["reason"] for f in report["fields"]
               if f["status"] == "skipped"}
    assert "truncated" in skipped["zz_truncated.jpg"] and "zz_corrupt.png" in skipped
    assert "zz_truncated.jpg" in result.stderr
    _check_totals(data, report)


def test_sessions_and_report_commands(tmp_path):
    assert run_cli("run", "--data-dir", str(tmp_path), "--sample", "S-77").returncode == 0
    listing = run_cli("sessions", "--data-dir", str(tmp_path), "--sample", "S-77")
    row = Store.open(tmp_path).sessions()[0]
    sid = row.id
    assert row.sample_id in listing.stdout and "finished" in listing.stdout  # its pseudonym
    line = next(x for x in listing.stdout.splitlines() if row.sample_id in x)
    counts = [row.fields_by_status[status] for status in FieldStatus]
    assert sum(counts) == 20 and " │ ".join(map(str, counts)) in " ".join(line.split())
    out = tmp_path / "rep.json"
    rep = run_cli("report", sid[:10], "--data-dir", str(tmp_path), "--json", str(out))
    assert rep.returncode == 0, rep.stderr
    assert json.loads(out.read_text())["session_id"] == sid


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_inputs_give_one_line_and_store_nothing(tmp_path):
    data = tmp_path / "data"
    bad_profile = tmp_path / "p.toml"
    bad_profile.write_text("[storage]\nevidense = true\n")
    _one_line_error(run_cli("run", "-p", str(bad_profile), "--data-dir", str(data)),
                    "storage.evidense")
    _one_line_error(run_cli("run", "-s", "usb:1", "--data-dir", str(data)), "unknown source")
    _one_line_error(run_cli("run", "-s", "camera:63", "--data-dir", str(data)),
                    "camera 63 not found")
    model = tmp_path / "m.onnx"
    shutil.copy(BUNDLED_MODEL, model)
    shutil.copy(BUNDLED_MODEL.with_suffix(".json"), model.with_suffix(".json"))
    with model.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    tampered = tmp_path / "t.toml"
    tampered.write_text(f"[model]\ndetector = '{model}'\n")
    _one_line_error(run_cli("run", "-p", str(tampered), "--data-dir", str(data)),
                    "does not match its manifest")
    missing = tmp_path / "missing.toml"
    missing.write_text(f"[model]\ndetector = '{tmp_path / 'none.onnx'}'\n")
    _one_line_error(run_cli("run", "-p", str(missing), "--data-dir", str(data)),
                    "model file not found")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    _one_line_error(run_cli("run", "--data-dir", str(blocker / "data")), "not writable")
    # the camera error happened after the session started: it is kept, marked interrupted
    statuses = [s.status for s in Store.open(data).sessions()]
    assert statuses == ["interrupted"]


def test_a_sample_or_operator_id_is_one_short_line(tmp_path):
    data = tmp_path / "data"
    for option, value in (("--sample", "A" * 201), ("--sample", "S-1\nS-2"),
                          ("--operator", "x" * 100_000)):
        result = run_cli("run", option, value, "--data-dir", str(data))
        assert result.returncode == 2, result.stderr
        assert f"Invalid value for '{option}': must be one line of at most 200" in result.stderr
        assert "Traceback" not in result.stderr
    assert not data.exists()  # refused before anything was stored


def test_disk_space_guard_keeps_stored_fields(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text("[storage]\nmin_free_mb = 100000000\n")
    result = run_cli("run", "-p", str(profile), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2 and "MB free" in result.stderr
    assert Store.open(tmp_path / "d").sessions() == []  # refused before any session


@pytest.mark.parametrize("command", [["run"], ["sessions"]])
def test_device_commands_import_no_workstation_code(tmp_path, command):
    probe = (
        "import sys\n"
        "from edge.cli.main import main\n"
        f"sys.argv = ['hemascope', *{command!r}, '--data-dir', {str(tmp_path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'ultralytics', 'training', 'export', 'torchvision'})\n"
        "print('HEAVY', bad)\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_bccd_folder_totals_match(tmp_path):
    """Acceptance: all 274 BCCD images; SQLite totals = per-field sums = JSON report."""
    folder = needs_datasets() / "detection" / "bccd" / "JPEGImages"
    result = run_cli("run", "-s", f"folder:{folder}", "--data-dir", str(tmp_path),
                     "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["fields_counted"] + report["fields_rejected"] == 274
    assert report["fields_skipped"] == 0 and report["fields_rejected"] <= 274 * 0.02  # QC
    _check_totals(tmp_path, report)
    counted = report["fields_counted"]
    assert np.isclose(report["mean_per_field"]["WBC"], report["totals"]["WBC"] / counted,
                      atol=1e-3)


def test_a_source_that_dies_keeps_every_field_captured_before(tmp_path):
    """Camera unplugged mid-session: earlier fields stored, session interrupted, error raised."""
    from edge.capture.synthetic import SyntheticSource
    from edge.config import Profile
    from edge.core.errors import HemascopeError
    from edge.inference.detector import Detector
    from edge.pipeline.runner import Runner

    class DyingCamera:
        name = "camera:test"

        def frames(self):
            yield from SyntheticSource(count=5, seed=3).frames()
            raise HemascopeError("camera 0 stopped delivering frames", "check the cable")

    profile = Profile()
    store = Store.open(tmp_path)
    with pytest.raises(HemascopeError, match="stopped delivering"):
        Runner(profile, store, Detector(BUNDLED_MODEL)).run(DyingCamera(), "S-9")
    session = store.sessions()[0]
    assert session.status == "interrupted" and session.fields_by_status[FieldStatus.COUNTED] == 5
    assert sorted(store.field_counts(session.id)) == [0, 1, 2, 3, 4]


def test_a_detector_failing_mid_run_keeps_the_fields_before_it_with_two_in_flight(tmp_path):
    """The detector raises on the 5th field while the 6th is in flight beside it: fields 0-3
    stay stored, nothing of the 5th or 6th is stored, the session is interrupted and the
    error reaches the caller."""
    from edge.capture.synthetic import SyntheticSource
    from edge.config import Profile
    from edge.core.errors import HemascopeError
    from edge.inference.detector import Detector
    from edge.pipeline.runner import Runner

    class FailingDetector(Detector):
        calls = 0

        def detect(self, prepared):
            FailingDetector.calls += 1
            if FailingDetector.calls == 5:
                raise HemascopeError("the accelerator stopped answering", "reconnect it")
            return super().detect(prepared)

    profile = Profile()
    assert profile.backend.fields_in_flight == 2
    store = Store.open(tmp_path)
    detector = FailingDetector(BUNDLED_MODEL, threads=profile.backend.inference_threads())
    with pytest.raises(HemascopeError, match="stopped answering"):
        Runner(profile, store, detector).run(SyntheticSource(count=10, seed=4), "S-13")
    session = store.sessions()[0]
    assert session.status == "interrupted"
    assert [f.idx for f in store.fields(session.id)] == [0, 1, 2, 3]
    evidence = sorted(p.name for p in (tmp_path / "evidence" / session.id).iterdir())
    assert evidence == [f"{i:05d}.jpg" for i in range(4)]  # no orphan file


def test_settle_mode_takes_one_field_per_stop_of_a_recorded_scan(tmp_path):
    from edge.capture.moving_slide import write_moving_slide

    video = tmp_path / "scan.avi"
    stops = write_moving_slide(video, stops=5, seed=11)
    result = run_cli("run", "-s", f"video:{video}", "--settle", "--data-dir", str(tmp_path / "d"),
                     "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["fields"]) == len(stops) == 5
    taken = [int(f["origin"].rsplit("#", 1)[1]) for f in report["fields"]]
    assert all(lo <= t <= hi for t, (lo, hi) in zip(taken, stops, strict=True))


def test_a_second_ctrl_c_waits_for_the_writer_before_finishing_the_session(tmp_path):
    """Ctrl-C twice in a row: the session is finished only after the last field is stored,
    never while the writer thread still writes to the same database."""
    import os
    import signal
    import threading
    import time

    from edge.capture.synthetic import SyntheticSource
    from edge.config import Profile
    from edge.inference.detector import Detector
    from edge.pipeline.runner import Runner

    stored: list[int] = []

    def on_field(_session: str, outcome) -> None:
        stored.append(outcome.idx)
        if len(stored) == 2:  # Ctrl-C, and again while the runner waits for the writer
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)

    # A shell starts a background job (`cmd &`) with SIGINT ignored, and Python then leaves it
    # so: restore Ctrl-C's usual handler, or the signals below would do nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    store = Store.open(tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt):
            Runner(Profile(), store, Detector(BUNDLED_MODEL)).run(
                SyntheticSource(count=20, seed=5), "S-10", on_field=on_field)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not any(t.name == "hemascope-writer" for t in threading.enumerate())
    session = store.sessions()[0]
    assert session.status == "interrupted"
    assert sorted(store.field_counts(session.id)) == sorted(stored) and len(stored) >= 2


def test_with_one_field_in_flight_the_next_is_read_between_inferences_never_during_one(
        tmp_path):
    """On a device whose cores the detector fills, the reader must not run during inference
    (a core taken from the model stalls it): every read falls between two detector runs."""
    from edge.capture.synthetic import SyntheticSource
    from edge.config import Profile
    from edge.pipeline.runner import Runner

    reads: list[tuple[float, float]] = []

    class TimedSource:
        name = "synthetic:timed"

        def frames(self):
            inner = iter(SyntheticSource(count=12, seed=8).frames())
            while True:
                t0 = time.perf_counter()
                frame = next(inner, None)
                time.sleep(0.02)  # a slow camera: reads long enough to overlap if allowed
                reads.append((t0, time.perf_counter()))
                if frame is None:
                    return
                yield frame

    store = Store.open(tmp_path)
    profile = Profile()
    profile.backend.fields_in_flight = 1
    detector = TimedDetector(BUNDLED_MODEL)
    sid = Runner(profile, store, detector).run(TimedSource(), "S-11")
    runs = [(d0, d1) for d0, d1, _ in detector.runs]
    assert len(store.field_counts(sid)) == 12 and len(runs) == 12
    assert all(thread is threading.main_thread() for _, _, thread in detector.runs)
    for r0, r1 in reads:
        assert not any(r0 < d1 and d0 < r1 for d0, d1 in runs), "a read overlapped inference"


def test_two_fields_in_flight_store_the_same_fields_as_one_in_the_same_order(tmp_path):
    """With two fields in the detector at once, fields are checked and stored in capture
    order, exactly as in lock step: unreadable, blank and duplicate fields included (the
    duplicate check depends on the order). And the two inferences do overlap."""
    from edge.capture.folder import FolderSource
    from edge.capture.synthetic import SyntheticSource
    from edge.config import Profile
    from edge.pipeline.runner import Runner

    folder = tmp_path / "fields"
    folder.mkdir()
    frames = [f.image for f in SyntheticSource(count=9, seed=21).frames()]
    for i, image in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), image)
    cv2.imwrite(str(folder / "f03b.png"), frames[3])  # the same field again
    cv2.imwrite(str(folder / "f05b.png"), np.full_like(frames[0], 200))  # blank: not detected
    (folder / "f07b.jpg").write_bytes(b"not a jpeg")  # unreadable

    stored = {}
    for in_flight in (1, 2):
        profile = Profile()
        profile.backend.fields_in_flight = in_flight
        detector = TimedDetector(BUNDLED_MODEL, threads=profile.backend.inference_threads())
        store = Store.open(tmp_path / f"data{in_flight}")
        sid = Runner(profile, store, detector).run(FolderSource(folder), "S-12")
        committed = [r[0] for r in store.conn.execute(
            "SELECT idx FROM fields WHERE session_id = ? ORDER BY id", (sid,))]
        assert committed == sorted(committed)  # stored in capture order
        counts = store.field_counts(sid)
        stored[in_flight] = [(f.idx, f.origin, f.status, f.reason, counts.get(f.idx))
                             for f in store.fields(sid)]
    assert stored[2] == stored[1]
    statuses = [s for _, _, s, _, _ in stored[2]]
    assert statuses.count("skipped") == 1 and statuses.count("rejected") == 2  # blank, again
    assert any("duplicate" in (r or "") for _, _, _, r, _ in stored[2])
    two = [(d0, d1) for d0, d1, _ in detector.runs]  # the two-in-flight run's calls
    assert any(a0 < b1 and b0 < a1 for (a0, a1), (b0, b1) in itertools.pairwise(two)), \
        "no two inferences overlapped"
