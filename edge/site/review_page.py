"""`hemascope review SESSION`: a review page served on 127.0.0.1 with the standard library.

`ReviewSession` holds what a technician can do (relabel cells, reject or restore fields),
each action stored beside the model's output in its own transaction; `ReviewServer` serves
one self-contained page (`review_page.html`: inline CSS and JS, no network), the session as
JSON, the evidence images the session stored, and takes the actions as JSON. Every request
must carry the one-time token printed with the URL (else 403) and name 127.0.0.1 or
localhost as its host (else 403: a page of another site cannot reach it through DNS).
When the review ends (the page's Done button or Ctrl-C) the session's next sync payload
version is queued, once, with every correction.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.core.errors import HemascopeError
from edge.core.labels import FieldStatus
from edge.site.review import reviewable
from edge.storage import audit
from edge.storage.store import Store
from edge.sync.payload import requeue

ORIGIN = "review page"
MAX_BODY = 1 << 20  # bytes of one JSON request
MAX_REASON = 500  # characters of a field's rejection reason


@dataclass(frozen=True)
class ReviewEnd:
    """What a review left: verdicts stored while the page was open, and the payload queued."""

    cells: int
    fields: int
    payload_version: int | None  # None: nothing changed since the last queued version


class ReviewSession:
    """The actions of the review page on one session, checked and stored (never over the
    model's output: in `reviews` and `field_reviews`, with the reviewer and the time)."""

    def __init__(self, store: Store, session: str, reviewer: str) -> None:
        self.store = store
        self.session, self.classes, cells = reviewable(store, session)
        self.reviewer = reviewer
        self.model = {(c.field_idx, c.cell): c for c in cells}
        self.fields = [f for f in store.fields(self.session.id)
                       if f.status is FieldStatus.COUNTED]
        self.stored_cells = 0
        self.stored_fields = 0
        # verdicts of a review whose process was killed before its end are queued now
        self.caught_up = requeue(store, self.session.id)

    def state(self) -> dict[str, Any]:
        """The session as the page shows it: cells with the model's class and the newest
        reviewed one, counted fields with their evidence and review verdict."""
        verdicts = {(r.field_idx, r.cell): r for r in self.store.reviews(self.session.id)}
        field_verdicts = {f.field_idx: f for f in self.store.field_reviews(self.session.id)}
        counts = self.store.field_counts(self.session.id)
        s = self.session
        return {
            "session": {"id": s.id, "sample_id": s.sample_id, "operator": s.operator,
                        "status": s.status, "started_at": s.started_at},
            "reviewer": self.reviewer,
            "classes": self.classes,
            "cells": [{"field": f, "cell": c, "model": cell.label,
                       "score": round(cell.label_score, 3), "crop": cell.crop_path,
                       "label": verdicts[f, c].label if (f, c) in verdicts else None,
                       "reviewer": verdicts[f, c].reviewer if (f, c) in verdicts else None}
                      for (f, c), cell in self.model.items()],
            "fields": [{"idx": f.idx, "evidence": f.evidence_path, "counts": counts.get(f.idx),
                        "rejected": f.idx in field_verdicts and field_verdicts[f.idx].rejected,
                        "reason": field_verdicts[f.idx].reason if f.idx in field_verdicts
                        else None} for f in self.fields],
        }

    def images(self) -> set[str]:
        """The evidence files the page may show (relative to the data dir)."""
        return ({c.crop_path for c in self.model.values() if c.crop_path}
                | {f.evidence_path for f in self.fields if f.evidence_path})

    def relabel(self, rows: list[tuple[int, int, str]]) -> int:
        """Store (field, cell, label) verdicts in one transaction; all checked first."""
        if not rows:
            raise HemascopeError("no cells given", "send at least one cell")
        for field, cell, label in rows:
            if (field, cell) not in self.model:
                raise HemascopeError(f"field {field} has no classified white cell {cell}",
                                     "reload the page")
            if label not in self.classes:
                raise HemascopeError(f"{label!r} is not a class of the model",
                                     f"use one of {', '.join(self.classes)}")
        with self.store.transaction():
            n = self.store.add_reviews(self.session.id, rows, self.reviewer, ORIGIN)
            audit.record(self.store, "review.cells", {"session": self.session.id, "cells": n,
                                                      "origin": ORIGIN})
        self.stored_cells += n
        return n

    def judge_field(self, idx: int, rejected: bool, reason: str | None) -> None:
        """Reject a counted field (a reason is required) or restore one rejected before."""
        if idx not in {f.idx for f in self.fields}:
            raise HemascopeError(f"session {self.session.id[:12]} has no counted field {idx}",
                                 "reload the page")
        reason = (reason or "").strip() or None
        if rejected and reason is None:
            raise HemascopeError("a field is rejected with a reason",
                                 "say why, e.g. 'smudged', 'thick area', 'stain precipitate'")
        if reason is not None and len(reason) > MAX_REASON:
            raise HemascopeError(f"reason longer than {MAX_REASON} characters", "shorten it")
        with self.store.transaction():
            self.store.add_field_review(self.session.id, idx, rejected,
                                        reason if rejected else None, self.reviewer, ORIGIN)
            audit.record(self.store, "review.field", {"session": self.session.id, "field": idx,
                                                      "rejected": rejected, "origin": ORIGIN})
        self.stored_fields += 1

    def finish(self) -> ReviewEnd:
        """Queue the session's next payload version (once, with every correction)."""
        return ReviewEnd(self.stored_cells, self.stored_fields,
                         requeue(self.store, self.session.id))


class ReviewServer(ThreadingHTTPServer):
    """The review page on 127.0.0.1:`port` (0: a free port), for holders of its token."""

    daemon_threads = True

    def __init__(self, review: ReviewSession, port: int = 0) -> None:
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise HemascopeError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})",
                                 "choose another --port, or leave it out for a free one"
                                 ) from None
        self.review = review
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()  # one action on the store at a time
        self.page = files("edge.site").joinpath("review_page.html").read_bytes()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/?token={self.token}"

    def stop_soon(self) -> None:
        """End `serve_forever` from a request handler (after its answer is sent)."""
        threading.Thread(target=self.shutdown, daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "hemascope-review"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI says what matters
        pass

    def _allowed(self) -> bool:
        port = self.server.server_address[1]
        host_ok = self.headers.get("Host") in (f"127.0.0.1:{port}", f"localhost:{port}")
        token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        if host_ok and hmac.compare_digest(token.encode(), self.server.token.encode()):
            return True
        self._send(HTTPStatus.FORBIDDEN, b"forbidden: open the URL `hemascope review` printed,"
                   b" with its token\n", "text/plain; charset=utf-8")
        return False

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                         "style-src 'unsafe-inline'; script-src 'unsafe-inline'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:
        if not self._allowed():
            return
        path = urlsplit(self.path).path
        review = self.server.review
        if path == "/":
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/state":
            with self.server.lock:
                self._json(review.state())
        elif path.startswith("/evidence/") and path[1:] in review.images():
            try:
                data = (review.store.data_dir / path[1:]).read_bytes()
            except OSError:
                self._json({"error": f"{path[1:]} is missing from the data dir"},
                           HTTPStatus.NOT_FOUND)
                return
            kind = "image/png" if path.endswith(".png") else "image/jpeg"
            self._send(HTTPStatus.OK, data, kind, cache="private, max-age=3600")
        else:
            self._json({"error": f"no {path} here"}, HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:
        if not self._allowed():
            return
        path = urlsplit(self.path).path
        try:
            body = self._body()
            with self.server.lock:
                if path == "/api/cells":
                    self.server.review.relabel(
                        [(int(r["field"]), int(r["cell"]), str(r["label"]))
                         for r in body["cells"]])
                elif path == "/api/field":
                    self.server.review.judge_field(int(body["field"]), bool(body["rejected"]),
                                                   body.get("reason"))
                elif path == "/api/done":
                    self._json({"done": True})
                    self.server.stop_soon()
                    return
                else:
                    self._json({"error": f"no {path} here"}, HTTPStatus.NOT_FOUND)
                    return
                self._json(self.server.review.state())
        except HemascopeError as exc:
            self._json({"error": f"{exc.problem} — {exc.fix}"}, HTTPStatus.BAD_REQUEST)
        except (KeyError, TypeError, ValueError) as exc:
            self._json({"error": f"malformed request ({exc!r})"}, HTTPStatus.BAD_REQUEST)

    def _body(self) -> dict[str, Any]:
        if self.headers.get_content_type() != "application/json":
            raise ValueError("the body must be application/json")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError(f"body larger than {MAX_BODY} bytes")
        body = json.loads(self.rfile.read(n) or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

