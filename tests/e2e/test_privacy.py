"""Issue #20, finding 11 (privacy): a real run through the CLI stores pseudonyms unless the
profile keeps ids in clear, and what it queues for the hub holds no id, folder or setting."""

import hashlib
import json
import sqlite3
import stat

from edge.storage import layout
from edge.storage.pseudonyms import device_secret, pseudonym
from edge.sync.models import canonical_json
from tests.conftest import run_cli
from tests.helpers.images import hostile_header, png

SAMPLE = "MRN-884213 Jane Doe 1990-02-01"
OPERATOR = "Dr Amina Bello"


def _slide(tmp_path):
    slide = tmp_path / "Clinic Records" / "slide 7"
    slide.mkdir(parents=True)
    for i in range(2):
        (slide / f"f{i}.png").write_bytes(png(320, 240))
    (slide / "f2.png").write_bytes(hostile_header())  # skipped, with a reason
    return slide


def _everything_stored(data) -> bytes:
    """Every byte of the database and its write-ahead log."""
    return b"".join(p.read_bytes() for p in data.glob(layout.DATABASE + "*"))


def test_a_run_stores_and_queues_pseudonyms_and_no_folder_or_setting(tmp_path):
    slide, data = _slide(tmp_path), tmp_path / "data"
    done = run_cli("run", "-s", f"folder:{slide}", "--data-dir", str(data), "--sample", SAMPLE,
                   "--operator", OPERATOR)
    assert done.returncode == 0, done.stderr
    secret = device_secret(data)
    alias = pseudonym(secret, "sample", SAMPLE)
    assert f"sample {SAMPLE} (stored as {alias})" in done.stdout  # on screen, not on disk
    assert len(secret) == 32
    assert stat.S_IMODE((data / layout.DEVICE_SECRET).stat().st_mode) == 0o600
    stored = _everything_stored(data)
    for clear in (SAMPLE, "884213", "Amina", OPERATOR):
        assert clear.encode() not in stored
    conn = sqlite3.connect(data / layout.DATABASE)
    (sample_id, operator, profile_json), = conn.execute(
        "SELECT sample_id, operator, profile_json FROM sessions")
    [body] = [bytes(b) for b, in conn.execute("SELECT body FROM outbox")]
    conn.close()
    assert (sample_id, operator) == (alias, pseudonym(secret, "operator", OPERATOR))
    payload = json.loads(body)
    assert payload["summary"]["sample_id"] == alias
    assert payload["summary"]["source"] == "folder:slide 7"
    assert [f["origin"] for f in payload["summary"]["fields"]] == ["f0.png", "f1.png", "f2.png"]
    assert payload["profile"] == {"name": "workstation-dev", "sha256": hashlib.sha256(
        canonical_json(json.loads(profile_json))).hexdigest()}
    for secret_text in (str(tmp_path), "Clinic Records", "min_free_mb", "data_dir"):
        assert secret_text.encode() not in body
    found = run_cli("sessions", "--data-dir", str(data), "--sample", SAMPLE)
    assert found.returncode == 0 and alias in found.stdout and "finished" in found.stdout
    assert f"sample {SAMPLE} is {alias} in payloads and at the hub" in found.stdout
    other = run_cli("sessions", "--data-dir", str(data), "--sample", "MRN-000001")
    assert "finished" not in other.stdout


def test_a_profile_that_keeps_clear_ids_stores_them_and_still_syncs_pseudonyms(tmp_path):
    slide, data = _slide(tmp_path), tmp_path / "data"
    profile = tmp_path / "clear.toml"
    profile.write_text(f'[storage]\ndata_dir = "{data}"\n[privacy]\nkeep_clear_ids = true\n')
    for args in (["-p", str(profile)], ["--data-dir", str(data)]):  # clear, then default
        done = run_cli("run", "-s", f"folder:{slide}", *args, "--sample", SAMPLE)
        assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(data / layout.DATABASE)
    ids = [r for r, in conn.execute("SELECT sample_id FROM sessions ORDER BY started_at")]
    bodies = [json.loads(b) for b, in conn.execute("SELECT body FROM outbox ORDER BY id")]
    conn.close()
    alias = pseudonym(device_secret(data), "sample", SAMPLE)
    assert ids == [SAMPLE, alias]  # kept in clear only where the profile said so
    # the hub sees one pseudonym for both sessions of the sample, and never the id
    assert [b["summary"]["sample_id"] for b in bodies] == [alias, alias]
    listed = run_cli("sessions", "--data-dir", str(data), "--sample", SAMPLE).stdout
    assert listed.count("finished") == 2
