"""The device side of sync: token file, URL rules, backoff, retries, lock, HTTPS."""

import ast
import fcntl
import shutil
import subprocess
import sys

import pytest

from edge.core.errors import HemascopeError
from edge.sync.client import backoff_delay, endpoint, read_token, write_token
from tests.conftest import ROOT, run_cli
from tests.helpers.pgserver import free_port
from tests.helpers.sync import Hub, device_profile, device_rows, make_sessions

TOKEN = "clinic-7." + "k" * 43


def test_token_file_is_created_0600_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "etc" / "token"
    write_token(path, TOKEN)
    assert path.stat().st_mode & 0o777 == 0o600 and read_token(path) == TOKEN
    path.chmod(0o644)
    with pytest.raises(HemascopeError, match="readable by other users"):
        read_token(path)
    with pytest.raises(HemascopeError, match="malformed"):
        write_token(path, "no secret here")
    with pytest.raises(HemascopeError, match="no hub token"):
        read_token(tmp_path / "missing")


def test_set_token_reads_stdin_and_writes_0600(tmp_path):
    profile = device_profile(tmp_path, tmp_path / "d", "http://127.0.0.1:1/api", None)
    done = subprocess.run([sys.executable, "-m", "edge", "sync", "set-token", "-p", str(profile)],
                          input=TOKEN + "\n", capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    token_file = tmp_path / "d.token"
    assert token_file.read_text().strip() == TOKEN
    assert token_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("url", "problem"), [
    (None, "hub_url is not set"),
    ("ftp://hub/api", "not an http"),
    ("http://192.0.2.10/api", "clear text"),
    ("http://hub.clinic.example/api", "clear text"),
])
def test_hub_urls_that_would_leak_the_token_are_refused(url, problem):
    with pytest.raises(HemascopeError, match=problem):
        endpoint(url)


def test_plain_http_is_allowed_to_this_machine_only():
    assert endpoint("http://127.0.0.1:8765/api/") == "http://127.0.0.1:8765/api/v1/payloads"
    assert endpoint("https://hub.clinic.example/api").startswith("https://")


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    for n in range(1, 12):
        d = min(30.0, 0.5 * 2 ** (n - 1))
        delays = [backoff_delay(n, 0.5, 30.0) for _ in range(50)]
        assert all(d / 2 <= x <= d for x in delays)
        assert len(set(delays)) > 1  # jittered, so devices do not retry in lockstep


def test_unreachable_hub_keeps_payloads_and_says_why(tmp_path):
    data = tmp_path / "d"
    make_sessions(data, 3)
    profile = device_profile(tmp_path, data, f"http://127.0.0.1:{free_port()}/api", TOKEN,
                             retries=2, backoff_s=0.01, backoff_max_s=0.05, timeout_s=2)
    done = run_cli("sync", "-p", str(profile))
    assert done.returncode == 2
    assert "gave up after 3 attempts" in done.stderr and "payloads stay pending" in done.stderr
    assert done.stderr.count("retry") == 2
    rows = device_rows(data)
    assert {state for _, _, state in rows.values()} == {"pending"}
    shown = run_cli("sync", "--status", "-p", str(profile)).stdout
    assert "pending 3  sent 0" in shown and "unreachable" in shown


def test_a_second_sync_on_the_same_data_dir_is_refused(tmp_path):
    data = tmp_path / "d"
    make_sessions(data, 1)
    profile = device_profile(tmp_path, data, f"http://127.0.0.1:{free_port()}/api", TOKEN)
    with open(data / "sync.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = run_cli("sync", "-p", str(profile))
    assert done.returncode == 2 and "another `hemascope sync` is running" in done.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_sync_over_https_needs_the_hub_ca(tmp_path):
    cert, key = tmp_path / "hub.pem", tmp_path / "hub.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    hub = Hub(str(tmp_path / "hub.db"), tmp_path, tls=(cert, key)).start()
    try:
        token = hub.add_device("tls-dev")
        data = tmp_path / "d"
        make_sessions(data, 4)
        untrusted = device_profile(tmp_path, data, hub.url, token)
        done = run_cli("sync", "-p", str(untrusted))
        assert done.returncode == 2 and "certificate is not trusted" in done.stderr
        assert "sync.ca_file" in done.stderr
        trusted = device_profile(tmp_path, data, hub.url, token, ca_file=cert)
        done = run_cli("sync", "-p", str(trusted))
        assert done.returncode == 0, done.stderr
        assert "4 stored" in done.stdout and len(hub.rows()) == 4
    finally:
        hub.stop()


def test_device_sync_code_uses_only_the_standard_library_and_never_the_hub():
    for module in ("storage/outbox", "sync/client", "sync/bundle"):
        tree = ast.parse((ROOT / "edge" / f"{module}.py").read_text())
        roots = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
        roots |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module}
        assert roots <= set(sys.stdlib_module_names) | {"edge"}, (module, roots)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, edge.cli.main, edge.sync.client, edge.sync.bundle, "
         "edge.storage.outbox; "
         "print(sorted({m.split('.')[0] for m in sys.modules}))"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=True).stdout
    for heavy in ("hub", "fastapi", "starlette", "uvicorn", "psycopg"):
        assert f"'{heavy}'" not in loaded
