"""A session's sync payload, built from the store through the wire models the hub validates.

Each version is canonical JSON and queued in the outbox (`edge.storage.outbox`) in the
transaction that finishes or amends the session (or stores a review), so both commit or
neither.

What leaves the device is less than what it keeps: sample and operator ids as pseudonyms
(also of a session stored with clear ids), file names without their folders (the source,
each field's origin, paths inside error messages), and the profile as its name and sha256.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from edge.config import SyncConfig
from edge.report.summary import session_summary
from edge.storage.outbox import Outbox
from edge.storage.pseudonyms import device_secret, is_pseudonym, pseudonym
from edge.storage.store import Store
from edge.sync.models import PAYLOAD_SCHEMA, SessionPayload, canonical_json

# an absolute path, from its first slash (not a relative one like evidence/ID/00001.jpg)
_ABSOLUTE = re.compile(r"(?<![\w.~-])(?:/[^/\s'\"():,]+)+/?")
_SOURCE_PATH = re.compile(r"(folder|video):(/[^)]*)")

PAYLOAD_TIMINGS = ("decode", "preprocess", "infer", "postprocess")  # per field, in ms


def _evidence(store: Store, summary: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any] | None:
    """Evidence JPEGs (base64) up to the session profile's sync.evidence_max_kb, or None."""
    defaults = SyncConfig()
    if not sync.get("evidence", defaults.evidence):
        return None
    cap = int(sync.get("evidence_max_kb", defaults.evidence_max_kb)) * 1024
    images: dict[str, str] = {}
    omitted: list[str] = []
    used = 0
    for field in summary["fields"]:
        rel = field["evidence"]
        if rel is None:
            continue
        try:
            data = (store.data_dir / rel).read_bytes()
        except OSError:
            omitted.append(rel)
            continue
        if used + len(data) > cap:
            omitted.append(rel)
            continue
        used += len(data)
        images[rel] = base64.b64encode(data).decode("ascii")
    return {"max_kb": cap // 1024, "images": images, "omitted": omitted}


def _without_folders(text: str, folders: list[str]) -> str:
    """`text` with the device's folders taken off the paths in it (names kept)."""
    for folder in sorted(folders, key=len, reverse=True):
        text = text.replace(folder.rstrip("/") + "/", "")
    return _ABSOLUTE.sub(lambda m: m.group().rstrip("/").rsplit("/", 1)[-1], text)


def _public(store: Store, summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as it may leave the device: ids as pseudonyms, no local folders."""
    secret = device_secret(store.data_dir)
    for key, kind in (("sample_id", "sample"), ("operator", "operator")):
        value = summary[key]
        if value is not None and not is_pseudonym(value):
            summary[key] = pseudonym(secret, kind, value)
    folders = [str(store.data_dir)]
    if m := _SOURCE_PATH.search(summary["source"]):
        path = Path(m.group(2))
        folders.append(str(path if m.group(1) == "folder" else path.parent))
        summary["source"] = summary["source"].replace(m.group(2), path.name)
    summary["source"] = _without_folders(summary["source"], folders)
    for field in summary["fields"]:
        field["origin"] = _without_folders(field["origin"], folders)
        if field["reason"] is not None:
            field["reason"] = _without_folders(field["reason"], folders)
    return summary


def build_payload(store: Store, session_id: str, version: int) -> SessionPayload:
    """Everything the hub keeps about a session: summary, fields with cells (and the WBC
    differential's label of each classified cell), every model digest involved."""
    session = store.session(session_id)
    summary = _public(store, session_summary(store, session_id))
    profile = session.profile
    fields = []
    digests = {session.model_sha256, *(c["sha256"] for c in summary["classifiers"])}
    for f in store.fields(session_id):
        digests.add(f.model_sha256)
        cells = store.cells(session_id, f.idx)
        field: dict[str, Any] = {
            "idx": f.idx, "captured_at": f.captured_at, "width": f.width, "height": f.height,
            "model_sha256": f.model_sha256,
            "cells": [[c.class_name, round(c.confidence, 5), *(round(v, 2) for v in c.box)]
                      for c in cells],
            "timings_ms": {k: f.timings_ms[k] for k in PAYLOAD_TIMINGS},
        }
        labels = [[i, c.label, round(c.label_score, 5)]
                  for i, c in enumerate(cells) if c.label is not None]
        if labels:  # [index in cells, class, score]; absent when no cell was classified
            field["labels"] = labels
        fields.append(field)
    body: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA, "key": session.id, "version": version,
        "summary": summary, "model_digests": sorted(digests),
        "profile": {"name": session.profile_name,
                    "sha256": hashlib.sha256(canonical_json(profile)).hexdigest()},
        "fields": fields, "evidence": _evidence(store, summary, profile.get("sync") or {}),
    }
    if summary["review"] is not None:  # absent until someone reviews the session
        body["reviews"] = _reviews(store, session_id)
    return SessionPayload.model_validate(body)


def _reviews(store: Store, session_id: str) -> dict[str, Any]:
    """The newest verdict on each reviewed cell and field, with who, when and from where."""
    return {
        "cells": [{"field": r.field_idx, "cell": r.cell, "label": r.label,
                   "reviewer": r.reviewer, "at": r.reviewed_at, "origin": r.origin}
                  for r in store.reviews(session_id)],
        "fields": [{"field": f.field_idx, "rejected": f.rejected, "reason": f.reason,
                    "reviewer": f.reviewer, "at": f.reviewed_at, "origin": f.origin}
                   for f in store.field_reviews(session_id)],
    }


def requeue(store: Store, session_id: str) -> int | None:
    """Queue the session's next payload version after a change made beside its model output
    (a review), in one transaction; None when the payload did not change."""
    with store.writing():
        return outbox(store).enqueue(session_id)


def payload_bytes(store: Store, session_id: str, version: int) -> bytes:
    """The payload as it travels: canonical JSON of exactly the keys the device set."""
    payload = build_payload(store, session_id, version)
    return canonical_json(payload.model_dump(mode="json", by_alias=True, exclude_unset=True))


def outbox(store: Store) -> Outbox:
    """The device's outbox, queueing payloads built here."""
    return Outbox(store, lambda key, version: payload_bytes(store, key, version))

