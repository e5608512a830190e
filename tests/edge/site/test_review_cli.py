"""`hemascope review SESSION` as an operator runs it: the URL printed, the page served until
Done or Ctrl-C, the session queued again; bad input is one line and exit code 2."""

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from edge.storage.store import Store
from tests.conftest import ROOT, run_cli
from tests.helpers.review import make_review_session, payload_versions

URL = re.compile(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+")


def _start(*args):
    """(process, URL) of `hemascope review ARGS`, once it printed its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "edge", "review", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := URL.search(line):
            return proc, match.group(0)
    proc.kill()
    raise AssertionError(f"no URL printed: {lines} {proc.stderr.read()}")


def _post(url, path, body):
    base, token = url.split("/?")
    req = urllib.request.Request(f"{base}{path}?{token}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_review_session_serves_until_done_and_requeues_the_session(tmp_path):
    sid = make_review_session(tmp_path)
    proc, url = _start(sid[:8], "--data-dir", str(tmp_path))
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert "hemascope review" in resp.read().decode()
    state = _post(url, "/api/cells", {"cells": [{"field": 1, "cell": 0, "label": "lymphocyte"}]})
    assert state["reviewer"] == "amina"  # the session's operator by default
    _post(url, "/api/done", {})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert ("review ended: 1 cell and 0 field verdicts stored; session queued for sync as "
            "payload version 2") in out
    assert payload_versions(tmp_path, sid) == [1, 2]


def test_ctrl_c_ends_the_review_keeping_every_verdict(tmp_path):
    sid = make_review_session(tmp_path)
    proc, url = _start("page", sid[:8], "--reviewer", "bola", "--data-dir", str(tmp_path))
    _post(url, "/api/field", {"field": 2, "rejected": True, "reason": "thick area"})
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "review ended: 0 cell and 1 field verdicts stored" in out
    store = Store.open(tmp_path)
    assert [(f.field_idx, f.reason, f.reviewer) for f in store.field_reviews(sid)] == [
        (2, "thick area", "bola")]
    store.close()
    assert payload_versions(tmp_path, sid) == [1, 2]


def test_the_port_option_is_used(tmp_path):
    from tests.helpers.pgserver import free_port

    sid = make_review_session(tmp_path)
    port = free_port()
    proc, url = _start(sid[:8], "--port", str(port), "--data-dir", str(tmp_path))
    assert url.startswith(f"http://127.0.0.1:{port}/?token=")
    _post(url, "/api/done", {})
    assert proc.wait(timeout=60) == 0
    assert payload_versions(tmp_path, sid) == [1]  # nothing reviewed: no new version


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: "0123abcd", "no session matching id '0123abcd'"),
    (lambda d: make_review_session(d, finish=False), "is still running — review it once"),
    (lambda d: make_review_session(d, fields=([], [])), "has no classified white cells"),
    (lambda d: make_review_session(d, wbc=False), "ran without the white-cell differential"),
    (lambda d: make_review_session(d, operator=None), "say who reviews: --reviewer NAME"),
])
def test_a_session_that_cannot_be_reviewed_is_one_line_and_exit_2(tmp_path, make, message):
    sid = make(tmp_path)
    done = run_cli("review", sid[:8], "--data-dir", str(tmp_path), timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_review_import_stays_beside_the_page_and_queues_version_2(tmp_path):
    sid = make_review_session(tmp_path)
    csv = tmp_path / "r.csv"
    csv.write_text("field,cell,label\n0,0,neutrophil\n1,0,ig\n")
    done = run_cli("review", "import", sid[:8], str(csv), "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "2 reviewed cells stored (1 relabelled, 1 confirmed)" in done.stdout
    assert payload_versions(tmp_path, sid) == [1, 2]
    shown = run_cli("report", sid[:8], "--data-dir", str(tmp_path), "--json",
                    str(tmp_path / "r.json"))
    assert shown.returncode == 0, shown.stderr
    assert "review: model vs reviewed differential" in shown.stdout
    assert "agreement with the model 50.0 %, 1 relabelled" in shown.stdout
    review = json.loads((tmp_path / "r.json").read_text())["review"]
    assert review["reviewed_counts"] == {"ig": 1, "neutrophil": 1}
