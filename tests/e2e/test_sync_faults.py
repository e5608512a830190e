"""Exactly once through a faulty network, a hub killed mid-run and a device killed mid-sync.

The full run over 1000+ sessions is scripts/sync_faults.py; this is its small, fast twin.
"""

import signal
import subprocess
import sys
import time

import pytest

from scripts.faultproxy import KINDS
from tests.conftest import ROOT, run_cli
from tests.helpers.sync import (
    FaultProxy,
    Hub,
    device_profile,
    device_rows,
    hub_db,
    make_sessions,
)

SESSIONS = 48


def _wait_rows(hub: Hub, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(hub.rows()) < at_least:
        assert time.monotonic() < deadline, f"hub holds {len(hub.rows())} < {at_least} rows"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_session_arrives_exactly_once_byte_identical(request, tmp_path, backend):
    hub = Hub(hub_db(request, backend, tmp_path), tmp_path).start()
    proxy = None
    try:
        token = hub.add_device("faulty")
        data = tmp_path / "device"
        make_sessions(data, SESSIONS, seed=11)
        # every fault kind, often: with this seed each one occurs within the first requests
        proxy = FaultProxy(hub.port, tmp_path, seed=3, drop_request=0.1, drop_response=0.15,
                           delay=0.1, reset_request=0.1, reset_response=0.15, duplicate=0.15,
                           delay_max=1.5)
        profile = device_profile(tmp_path, data, proxy.url, token, batch_size=3, timeout_s=1.0,
                                 retries=200, backoff_s=0.02, backoff_max_s=0.2)
        # 200 failures in a row before the device gives up: a loaded machine (trainings
        # beside the suite) can take 40 attempts to restart the hub, which failed the test
        cmd = [sys.executable, "-m", "edge", "sync", "-p", str(profile)]
        device = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        _wait_rows(hub, 6)
        hub.restart()  # SIGKILL mid-run, then start again on the same port
        _wait_rows(hub, 12)
        assert device.poll() is None, "the device finished before it could be killed"
        device.send_signal(signal.SIGKILL)
        device.wait(timeout=30)
        for _ in range(3):  # resume; bounded
            done = run_cli("sync", "-p", str(profile), timeout=180)
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stderr
        faults = proxy.stop()
        proxy = None
        rows = device_rows(data)
        held = hub.rows()
        assert len(rows) == SESSIONS and {s for _, _, s in rows.values()} == {"sent"}
        assert held == {("faulty", k, v): (sha, body) for (k, v), (sha, body, _) in rows.items()}
        assert all(faults.get(kind, 0) > 0 for kind in KINDS), faults
    finally:
        if proxy is not None:
            proxy.stop()
        hub.stop()
