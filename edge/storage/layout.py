"""Where files live under the data dir: the database, the audit log, the device secret, the
space reserve and each session's evidence files.

Paths are relative to the data dir (as stored in the database) and read
`evidence/SESSION/NNNNN.jpg` (annotated field), `NNNNN-cellKKK.png` (a white cell as the
differential saw it), `NNNNN-field.png` (the field as the ALL classifier saw it).
"""

from __future__ import annotations

DATABASE = "hemascope.db"
AUDIT_LOG = "audit.jsonl"  # the hash-chained event log (`edge.storage.audit`)
DEVICE_SECRET = "device.secret"  # the key of the device's pseudonyms (edge.storage.pseudonyms)
RESERVE = "space.reserve"  # room kept to close a session on a full disk (edge.storage.space)


def evidence_dir(session_id: str) -> str:
    return f"evidence/{session_id}"


def field_image(session_id: str, idx: int) -> str:
    """The annotated evidence JPEG of field `idx`."""
    return f"{evidence_dir(session_id)}/{idx:05d}.jpg"


def cell_input(session_id: str, idx: int, cell: int) -> str:
    """The differential's input for detection `cell` of field `idx` (lossless PNG)."""
    return f"{evidence_dir(session_id)}/{idx:05d}-cell{cell:03d}.png"


def field_input(session_id: str, idx: int) -> str:
    """The ALL subtype classifier's input for field `idx` (lossless PNG)."""
    return f"{evidence_dir(session_id)}/{idx:05d}-field.png"


def explained(input_rel: str) -> str:
    """Where `hemascope explain` writes the occlusion map of a stored classifier input."""
    return input_rel.removesuffix(".png") + "-explained.png"
