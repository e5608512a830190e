"""What the hub accepts: the upload envelope and the session payload, checked in bounded memory.

A payload is refused unless its bytes match its sha256, it is canonical JSON, it follows
`hemascope.session.v1` (the wire models in `edge.sync.models`, which the device builds its
payloads from), and its numbers agree with each other (field counts, totals, cells per
class, model digests).

The body is read one piece at a time and never decoded whole: each field of `fields` and of
`summary.fields`, and each evidence image, is decoded, checked and dropped in turn (what the
session rules need is kept as `FieldFacts`), and everything else together may hold at most
`HEAD_MAX_CHARS` of JSON. A container is decoded from a slice of the text no longer than its
limit, so no piece, whatever its shape, grows into more Python objects than that slice
allows (about 26 MB for 1 MB of empty objects): checking costs about one copy of the body
besides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from edge.sync.models import (
    PAYLOAD_SCHEMA,
    FieldDetail,
    FieldFacts,
    FieldSummary,
    PayloadHead,
    UploadBatch,
    canonical_json,
)
from hub.db import Incoming

FIELD_MAX_CHARS = 2**20  # one field (detail or summary) as JSON
HEAD_MAX_CHARS = 2**20  # everything but the fields and evidence images, together
FIRST_WINDOW = 2**16  # most pieces fit: a larger one is tried again in a larger slice
_DECODER = json.JSONDecoder()
NOT_CANONICAL = "body is not canonical JSON (sorted keys, no spaces, ASCII)"


class Rejected(ValueError):
    """Why one payload version is refused."""


def _first_error(exc: ValidationError, *where: str | int) -> str:
    e = exc.errors()[0]
    return f"{'.'.join(str(p) for p in (*where, *e['loc'])) or 'payload'}: {e['msg']}"


def parse_batch(raw: bytes | bytearray) -> UploadBatch:
    try:
        return UploadBatch.model_validate_json(raw)
    except ValidationError as exc:
        raise Rejected(f"upload envelope: {_first_error(exc)}") from None


class _Reader:
    """Canonical JSON text, read one value at a time: a container only from a slice within
    a limit, and every decoded value must be canonical as written."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def at(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def expect(self, char: str) -> None:
        if not self.at(char):
            raise Rejected(f"{NOT_CANONICAL}: {char!r} expected at character {self.pos}")
        self.pos += 1

    def value(self, limit: int, too_large: str) -> Any:
        """Decode the value at pos: a container only from a slice of at most `limit`
        characters (its Python objects are bounded by the slice), anything else as it is."""
        text, start = self.text, self.pos
        if start >= len(text):
            raise Rejected(f"{NOT_CANONICAL}: the body ends early")
        if text[start] in "[{":
            obj, stop = self._container(limit, too_large)
        else:
            try:
                obj, stop = _DECODER.raw_decode(text, start)
            except ValueError:
                raise Rejected(f"{NOT_CANONICAL}: at character {start}") from None
        try:
            same = canonical_json(obj) == text[start:stop].encode()
        except ValueError:  # NaN or infinity
            same = False
        if not same:
            raise Rejected(f"{NOT_CANONICAL}: at character {start}")
        self.pos = stop
        return obj

    def _container(self, limit: int, too_large: str) -> tuple[Any, int]:
        """Decode the container at pos from slices growing up to `limit` characters."""
        start, window = self.pos, min(FIRST_WINDOW, limit)
        while True:
            piece = self.text[start:start + window]
            try:
                obj, size = _DECODER.raw_decode(piece)
                return obj, start + size
            except (ValueError, RecursionError) as exc:
                if window < limit and len(piece) == window:
                    window = min(window * 8, limit)
                    continue
                cut = isinstance(exc, json.JSONDecodeError) and (
                    exc.pos >= len(piece) - 1 or exc.msg.startswith("Unterminated string"))
                raise Rejected(too_large if cut and len(piece) == limit else
                               f"{NOT_CANONICAL}: at character {start}") from None

    def members(self) -> Iterator[str]:
        """The keys of the object at pos, in order; the caller reads each one's value."""
        self.expect("{")
        last: str | None = None
        while not self.at("}"):
            if last is not None:
                self.expect(",")
            if not self.at('"'):
                raise Rejected(f"{NOT_CANONICAL}: a key expected at character {self.pos}")
            key = self.value(0, "")
            if last is not None and key <= last:
                raise Rejected(f"{NOT_CANONICAL}: keys out of order at character {self.pos}")
            self.expect(":")
            yield key
            last = key
        self.expect("}")

    def items(self) -> Iterator[int]:
        """The indexes of the array at pos; the caller reads each element."""
        self.expect("[")
        i = 0
        while not self.at("]"):
            if i:
                self.expect(",")
            yield i
            i += 1
        self.expect("]")


Streamed = dict[str, tuple[str, Callable[[], Any]]]  # key: (its opening bracket, reader)


class _Walk:
    """One pass over a payload body: the head (everything but the per-field lists and the
    evidence images) as a dict, the fields as facts, and the first invalid field's error."""

    def __init__(self, text: str) -> None:
        self.reader = _Reader(text)
        self.budget = HEAD_MAX_CHARS
        self.facts = FieldFacts()
        self.error: str | None = None
        self.head = self._object({"fields": ("[", self._details),
                                  "summary": ("{", self._summary),
                                  "evidence": ("{", self._evidence)})
        if self.reader.pos != len(text):
            raise Rejected(f"{NOT_CANONICAL}: text after the payload")

    def _object(self, streamed: Streamed) -> dict[str, Any]:
        """The object at pos; a key in `streamed` whose value opens as expected is read by
        its reader, any other value decoded within what is left of the head's budget."""
        out: dict[str, Any] = {}
        for name in self.reader.members():
            opening, read = streamed.get(name, ("", None))
            if read is not None and self.reader.at(opening):
                out[name] = read()
            else:
                start = self.reader.pos
                out[name] = self.reader.value(max(self.budget, 0), "the payload without its "
                                              f"fields is over {HEAD_MAX_CHARS // 2**20} MB")
                self.budget -= self.reader.pos - start
        return out

    def _each(self, model: type[BaseModel], where: str) -> Iterator[Any]:
        """Validate each element of the array at pos as `model`; after the first error the
        rest is only read."""
        for i in self.reader.items():
            piece = self.reader.value(FIELD_MAX_CHARS, f"{where}.{i} is over "
                                      f"{FIELD_MAX_CHARS // 2**20} MB")
            if self.error is None:
                try:
                    yield model.model_validate(piece)
                except ValidationError as exc:
                    self.error = _first_error(exc, *where.split("."), i)

    def _details(self) -> list[Any]:
        for detail in self._each(FieldDetail, "fields"):
            self.facts.add_detail(detail)
        return []

    def _summary(self) -> dict[str, Any]:
        return self._object({"fields": ("[", self._summary_fields)})

    def _summary_fields(self) -> list[Any]:
        for field in self._each(FieldSummary, "summary.fields"):
            self.facts.add_summary(field)
        return []

    def _evidence(self) -> dict[str, Any]:
        return self._object({"images": ("{", self._images)})

    def _images(self) -> dict[str, str]:
        for name in self.reader.members():
            image = self.reader.value(FIELD_MAX_CHARS, f"evidence image {name} is not a string")
            if not isinstance(image, str) and self.error is None:
                self.error = f"evidence.images.{name}: Input should be a valid string"
        return {}


_DETAILS = TypeAdapter(list[FieldDetail])


def validate(key: str, version: int, sha256: str, body: bytes) -> Incoming:
    """Check one payload version completely; raise Rejected with the reason."""
    if hashlib.sha256(body).hexdigest() != sha256:
        raise Rejected("sha256 does not match the body")
    if not body.isascii():
        raise Rejected(NOT_CANONICAL)
    walk = _Walk(body.decode("ascii"))
    head = walk.head
    if head.get("schema") != PAYLOAD_SCHEMA:
        raise Rejected(f"unknown payload schema {head.get('schema')!r}; this hub reads "
                       f"{PAYLOAD_SCHEMA}")
    if walk.error is not None:
        raise Rejected(walk.error)
    try:
        _DETAILS.validate_python(head.pop("fields", None))  # [] once read, or what it was
    except ValidationError as exc:
        raise Rejected(_first_error(exc, "fields")) from None
    try:
        payload = PayloadHead.model_validate(head)
        payload.check(walk.facts)
    except ValidationError as exc:
        raise Rejected(_first_error(exc)) from None
    except ValueError as exc:
        raise Rejected(str(exc)) from None
    if (payload.key, payload.version) != (key, version):
        raise Rejected("key or version differ from the payload's own")
    s = payload.summary
    return Incoming(key, version, sha256, body, s.sample_id, s.status, s.started_at,
                    s.fields_counted)
