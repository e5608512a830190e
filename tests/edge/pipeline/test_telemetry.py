import pytest

from edge.capture.synthetic import SyntheticSource
from edge.config import Profile
from edge.core.labels import FieldStatus
from edge.inference.detector import Detector
from edge.pipeline import telemetry
from edge.pipeline.runner import Runner
from edge.report.summary import session_summary
from edge.storage.store import Store
from tests.conftest import BUNDLED_MODEL


def test_this_machine_reports_load_and_memory():
    snap = telemetry.snapshot()
    assert snap["cpus"] >= 1 and 0 < snap["mem_available_mb"] <= snap["mem_total_mb"]


def test_thermal_zones_are_read_and_missing_sources_skipped(tmp_path, monkeypatch):
    zone = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("61250\n")
    monkeypatch.setattr(telemetry, "SYS", tmp_path / "sys")
    monkeypatch.setattr(telemetry, "PROC", tmp_path / "no-proc")  # load and memory missing
    snap = telemetry.snapshot()
    assert snap == {"temperature_c": {"cpu-thermal": pytest.approx(61.25)}}


def test_a_failing_reader_never_stops_a_session(tmp_path, monkeypatch):
    def broken() -> dict:
        raise RuntimeError("sensor on fire")

    monkeypatch.setattr(telemetry, "READERS", (broken, *telemetry.READERS))
    store = Store.open(tmp_path)
    sid = Runner(Profile(), store, Detector(BUNDLED_MODEL)).run(
        SyntheticSource(count=2, seed=1), "S-t")
    snaps = session_summary(store, sid)["telemetry"]
    assert len(snaps) == 2 and all("mem_total_mb" in s and "at" in s for s in snaps)


def test_a_failed_final_snapshot_still_finishes_the_session(tmp_path, monkeypatch):
    store = Store.open(tmp_path)
    calls = []
    real = store.add_telemetry

    def fails_at_the_end(session_id: str, data: dict) -> None:
        calls.append(session_id)
        if len(calls) > 1:
            raise OSError("database is locked")
        real(session_id, data)

    monkeypatch.setattr(store, "add_telemetry", fails_at_the_end)
    with pytest.raises(OSError, match="locked"):
        Runner(Profile(), store, Detector(BUNDLED_MODEL)).run(
            SyntheticSource(count=2, seed=1), "S-t")
    (session,) = store.sessions()
    assert session.status == "finished" and session.fields_by_status[FieldStatus.COUNTED] == 2
