"""Upload outbox payloads to the clinic hub: bounded batches, backoff with jitter, resume.

Standard library only, so sync adds nothing to the device install. Each payload version is
idempotent at the hub (unique on device id + payload key + version), so resending after a
lost answer, a reset connection or a killed process stores nothing twice. A payload leaves
the queue only when the hub confirms it holds the same sha256.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import http.client
import ipaddress
import json
import random
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import __version__
from edge.config import SyncConfig
from edge.core.errors import HemascopeError
from edge.core.files import read_regular_file, utc_now, write_bytes_atomic
from edge.storage import audit
from edge.storage.outbox import Item, Outbox
from edge.storage.store import Store
from edge.sync.payload import outbox as payload_outbox

TOKEN_RE = re.compile(r"^([A-Za-z0-9_-]{1,64})\.[A-Za-z0-9_-]{32,256}$")
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
MAX_TOKEN_BYTES = 4096  # a token is at most 321 characters
MAX_CA_BYTES = 2**20  # a CA bundle of a few hundred certificates
_STORE_FIX = "payloads stay pending; run `hemascope sync` again"


def device_id(token: str) -> str:
    """The device id a token belongs to (tokens read `DEVICE_ID.SECRET`)."""
    match = TOKEN_RE.match(token)
    if match is None:
        raise HemascopeError("the hub token is malformed",
                             "copy the whole line printed by `hemascope-hub add-device`")
    return match.group(1)


def bundle_key(token: str) -> bytes:
    """The device's signing key for USB bundles, derived from its token (the hub keeps it)."""
    return hmac.new(token.encode(), b"hemascope bundle key v1", hashlib.sha256).digest()


def read_token(path: Path | None) -> str:
    """Read and check the device token; refuse a file other users can read."""
    fix = "store the token with `hemascope sync set-token < token.txt`"
    if path is None:
        raise HemascopeError("sync.token_path is not set in the profile",
                             f"set [sync] token_path in the device profile, then {fix}")
    try:
        mode = path.stat().st_mode
        token = read_regular_file(path, MAX_TOKEN_BYTES).decode("utf-8").strip()
    except FileNotFoundError:
        raise HemascopeError(f"no hub token at {path}", fix) from None
    except OSError as exc:
        raise HemascopeError(f"cannot read hub token {path} ({exc.strerror})",
                             "run hemascope as the user that owns the token file") from None
    except ValueError as exc:  # not a regular file, too large, not UTF-8
        raise HemascopeError(f"hub token {path} is unusable ({exc})", fix) from None
    if mode & 0o077:
        raise HemascopeError(f"hub token {path} is readable by other users",
                             f"run `chmod 600 {path}`")
    device_id(token)
    return token


def write_token(path: Path, token: str) -> None:
    """Write the token atomically, readable by its owner only (0600)."""
    device_id(token)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_bytes_atomic(path, token.encode() + b"\n", mode=0o600)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The TLS context of uploads: the system CAs, or the CA certificates (PEM) of
    `sync.ca_file`, read as a bounded regular file."""
    if ca_file is None:
        return ssl.create_default_context()
    fix = "point sync.ca_file at the hub's CA certificate (PEM)"
    try:
        pem = read_regular_file(ca_file, MAX_CA_BYTES).decode("ascii")
        return ssl.create_default_context(cadata=pem)
    except OSError as exc:  # ssl.SSLError too: no certificate in it
        raise HemascopeError(f"cannot use sync.ca_file {ca_file} ({exc.strerror or exc})",
                             fix) from None
    except ValueError as exc:  # not a regular file, too large, not text
        raise HemascopeError(f"sync.ca_file {ca_file} is unusable ({exc})", fix) from None


def endpoint(hub_url: str | None) -> str:
    """The upload URL; plain http only to this machine, so a token never crosses a network."""
    if not hub_url:
        raise HemascopeError("sync.hub_url is not set in the profile",
                             'set [sync] hub_url = "https://HUB/api" in the device profile')
    try:
        parts = urllib.parse.urlsplit(hub_url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and (
            parts.port is None or parts.port > 0)
    except ValueError:  # a broken [IPv6] host, a port out of range
        usable = False
    if not usable:
        raise HemascopeError(f"sync.hub_url {hub_url[:200]!r} is not an http(s) URL",
                             'write it like "https://hub.clinic.example/api"')
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise HemascopeError(f"sync.hub_url sends the token in clear text to {parts.hostname}",
                             "use https:// (serve the hub with --tls-cert and --tls-key)")
    return hub_url.rstrip("/") + "/v1/payloads"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: uniform in [d/2, d], d = min(cap, base*2^(n-1))."""
    d = min(cap, base * 2 ** (failures - 1))
    return random.uniform(d / 2, d)


class Transient(Exception):
    """The attempt failed in a way that a later attempt may not (network, 5xx, 429)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def post_batch(url: str, token: str, items: list[Item], timeout: float,
               context: ssl.SSLContext) -> Answer:
    """POST one batch; raise Transient for anything a retry may fix."""
    data = json.dumps({"payloads": [
        {"key": i.key, "version": i.version, "sha256": i.sha256, "body": i.body.decode("ascii")}
        for i in items]}).encode()
    request = urllib.request.Request(url, data, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        "User-Agent": f"hemascope/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read()
        except (OSError, http.client.HTTPException):
            raw = b""
        if exc.code in _TRANSIENT_STATUS:
            raise Transient(f"hub answered {exc.code}",
                            _retry_after(exc.headers.get("Retry-After"))) from None
        return Answer(exc.code, _json_object(raw))
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise HemascopeError(f"the hub's HTTPS certificate is not trusted ({exc.reason})",
                                 "set sync.ca_file to the CA that signed it") from None
        raise Transient(f"hub unreachable ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise Transient(f"connection failed ({type(exc).__name__}: {exc})") from None
    body = _json_object(raw)
    if not isinstance(body.get("results"), list):
        raise Transient("hub answer unreadable")
    return Answer(status, body)


@contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    with open(data_dir / "sync.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HemascopeError("another `hemascope sync` is running on this data dir",
                                 "wait for it to finish") from None
        yield


@contextmanager
def _audited(store: Store, url: str, outbox: Outbox, report: SyncReport) -> Iterator[None]:
    """Record what a sync did as a `sync` audit event, also when it stops on an error."""
    error: str | None = None
    try:
        yield
    except HemascopeError as exc:
        error = exc.problem
        raise
    finally:
        audit.record(store, "sync", {
            "hub": urllib.parse.urlsplit(url).netloc, "stored": report.stored,
            "duplicates": report.duplicates, "rejected": len(report.rejected),
            "pending": outbox.counts()["pending"], "error": error})


@dataclass
class SyncReport:
    """What one `hemascope sync` did."""

    stored: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    pending: int = 0


def _auth_error(answer: Answer) -> HemascopeError:
    detail = answer.body.get("detail", "")
    if answer.status == 403:
        return HemascopeError(f"the hub refused this device (403: {detail})",
                              f"ask the hub admin to re-enrol it; {_STORE_FIX}")
    return HemascopeError(f"the hub refused this device's token ({answer.status}: {detail})",
                          "get a token with `hemascope-hub add-device` and store it with "
                          "`hemascope sync set-token`")


def _apply(answer: Answer, batch: list[Item], outbox: Outbox, report: SyncReport) -> bool:
    """Record the hub's answer to a batch; True if any payload left the queue."""
    detail = answer.body.get("detail", "")
    if answer.status in (401, 403):
        outbox.note_error(batch, f"{answer.status}: {detail}")
        raise _auth_error(answer)
    by_id = {(i.key, i.version): i for i in batch}
    if answer.status == 422:
        failed = [(by_id[(r.get("key"), r.get("version"))], f"hub rejected: {r.get('error')}")
                  for r in answer.body.get("rejected", []) if (r.get("key"), r.get("version"))
                  in by_id]
        if not failed:
            outbox.note_error(batch, f"422: {detail}")
            raise HemascopeError(f"the hub rejected the upload (422: {detail})",
                                 f"update the device or the hub so their versions match; "
                                 f"{_STORE_FIX}")
        outbox.mark_failed(failed)
        report.rejected += [(i.key, i.version, why) for i, why in failed]
        return True
    if answer.status != 200:
        outbox.note_error(batch, f"{answer.status}: {detail}")
        raise HemascopeError(f"the hub answered {answer.status} ({detail})",
                             f"check sync.hub_url and the hub's log; {_STORE_FIX}")
    confirmed, conflicts = [], []
    for r in answer.body["results"]:
        item = by_id.get((r.get("key"), r.get("version"))) if isinstance(r, dict) else None
        if item is None:
            continue
        if r.get("status") in ("stored", "duplicate") and r.get("sha256") == item.sha256:
            confirmed.append((item.key, item.version, item.sha256))
            report.stored += r["status"] == "stored"
            report.duplicates += r["status"] == "duplicate"
        elif r.get("status") == "conflict":
            conflicts.append((item, "hub holds different bytes for this payload version"))
    outbox.mark_sent(confirmed, utc_now(), "hub")
    outbox.mark_failed(conflicts)
    report.rejected += [(i.key, i.version, why) for i, why in conflicts]
    return bool(confirmed or conflicts)


def sync(store: Store, cfg: SyncConfig, on_event: Callable[[str], None] | None = None
         ) -> SyncReport:
    """Upload every pending payload, batch by batch, until none is left or retries run out;
    what it did (or where it stopped) is a `sync` audit event."""
    url = endpoint(cfg.hub_url)
    token = read_token(cfg.token_path)
    context = tls_context(cfg.ca_file)
    emit = on_event or (lambda _: None)
    outbox = payload_outbox(store)
    report = SyncReport()
    batch_size, failures = cfg.batch_size, 0
    with _lock(store.data_dir), _audited(store, url, outbox, report):
        for _ in range(outbox.counts()["pending"] * (cfg.retries + 2) + 16):  # a hard bound
            batch = outbox.batch(batch_size, cfg.batch_max_kb * 1024)
            if not batch:
                break
            outbox.begin_attempt(batch, utc_now())
            try:
                answer = post_batch(url, token, batch, cfg.timeout_s, context)
                if answer.status == 413 and len(batch) > 1:  # retry in smaller batches
                    batch_size = max(1, len(batch) // 2)
                    continue
                if answer.status == 413:
                    too_big = (batch[0], "hub rejected: larger than the hub accepts (413)")
                    outbox.mark_failed([too_big])
                    report.rejected.append((batch[0].key, batch[0].version, too_big[1]))
                    continue
                if not _apply(answer, batch, outbox, report):
                    raise Transient("hub answer confirmed none of the batch")
            except Transient as exc:
                outbox.note_error(batch, exc.reason)
                failures += 1
                if failures > cfg.retries:
                    raise HemascopeError(f"{exc.reason}; gave up after {failures} attempts",
                                         f"{_STORE_FIX} when the network is back") from None
                delay = max(backoff_delay(failures, cfg.backoff_s, cfg.backoff_max_s),
                            min(exc.retry_after or 0.0, cfg.backoff_max_s))
                emit(f"{exc.reason}; retry {failures}/{cfg.retries} in {delay:.1f} s")
                time.sleep(delay)
                continue
            failures = 0
            emit(f"batch of {len(batch)}: {report.stored} stored, {report.duplicates} already "
                 f"at the hub, {len(report.rejected)} rejected so far")
    report.pending = outbox.counts()["pending"]
    return report
