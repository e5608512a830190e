"""When a session has counted enough: the protocol modes and an incremental stop rule fed one
field at a time. QC-rejected fields never count towards any stop, the field limit included."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

WHITE_CELL_TARGETS = (100, 200, 400)  # customary differential counts


class Mode(StrEnum):
    """cbc: counts per field and estimates; differential: stop at N classified white cells;
    all-screen: ALL subtype work-up over a number of fields."""

    CBC = "cbc"
    DIFFERENTIAL = "differential"
    ALL_SCREEN = "all-screen"


class StopReason(StrEnum):
    TARGET = "target reached"
    FIELD_LIMIT = "field limit reached"
    OPERATOR = "stopped by the operator"


@dataclass(frozen=True)
class Protocol:
    """A session protocol. `white_cells` is the differential's target; `fields` is the number
    of accepted fields cbc and all-screen count (None: every field the source gives);
    `max_fields` caps accepted fields in every mode (None: no cap)."""

    mode: Mode
    white_cells: int = 200
    fields: int | None = None
    max_fields: int | None = None

    def __post_init__(self) -> None:
        if self.mode == Mode.DIFFERENTIAL and self.white_cells not in WHITE_CELL_TARGETS:
            raise ValueError(f"differential target must be one of {WHITE_CELL_TARGETS}, "
                             f"got {self.white_cells}")
        if any(n is not None and n < 1 for n in (self.fields, self.max_fields)):
            raise ValueError(f"field counts must be >= 1, got fields={self.fields}, "
                             f"max_fields={self.max_fields}")


@dataclass(frozen=True)
class FieldResult:
    """What the stop rule needs from one field: did it pass QC, and how many white cells were
    classified in it (the differential's denominator: not-a-white-cell calls left out)."""

    accepted: bool
    white_cells: int = 0


@dataclass(frozen=True)
class Progress:
    """The state after a field: stop or go on, why, and how far along."""

    mode: Mode
    stop: bool
    reason: StopReason | None
    white_cells: int
    fields: int
    rejected: int
    target: int | None  # white cells (differential) or fields (cbc, all-screen); None: none
    more_fields: int | None  # estimate; None when it cannot be estimated (yet)

    def line(self) -> str:
        """One terminal line: 'white cells 137/200 · fields 41 · about 20 more fields'."""
        if self.mode == Mode.DIFFERENTIAL:
            parts = [f"white cells {self.white_cells}/{self.target}", f"fields {self.fields}"]
        elif self.target is None:
            parts = [f"fields {self.fields}"]
        else:
            parts = [f"fields {self.fields}/{self.target}"]
        if self.rejected:
            parts.append(f"rejected {self.rejected}")
        if self.stop:
            parts.append(str(self.reason))
        elif self.more_fields is None and self.target is None:
            pass  # nothing to count down to: the source decides when to end
        elif self.more_fields is None:
            parts.append("more fields: not yet known")
        else:
            parts.append(f"about {self.more_fields} more field"
                         f"{'' if self.more_fields == 1 else 's'}")
        return " · ".join(parts)


class StopRule:
    """Feed `add` one field result at a time, in capture order; it says whether to stop.

    The first reason to stop is kept. Fields added after that (still in flight when the
    runner stopped) are counted, so the state matches what is stored."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._white = 0
        self._fields = 0
        self._rejected = 0
        self._reason: StopReason | None = None

    def add(self, field: FieldResult) -> Progress:
        if field.white_cells < 0:
            raise ValueError(f"white_cells must be >= 0, got {field.white_cells}")
        if field.accepted:
            self._fields += 1
            self._white += field.white_cells
        else:
            self._rejected += 1
        if self._reason is None:
            self._reason = self._reason_now()
        return self.progress

    def operator_stop(self) -> Progress:
        if self._reason is None:
            self._reason = StopReason.OPERATOR
        return self.progress

    def _reason_now(self) -> StopReason | None:
        p = self.protocol
        if (self._white >= p.white_cells if p.mode == Mode.DIFFERENTIAL
                else p.fields is not None and self._fields >= p.fields):
            return StopReason.TARGET
        if p.max_fields is not None and self._fields >= p.max_fields:
            return StopReason.FIELD_LIMIT
        return None

    def _more_fields(self) -> int | None:
        p = self.protocol
        left = None if p.max_fields is None else p.max_fields - self._fields
        if p.mode == Mode.DIFFERENTIAL:
            if self._white == 0:  # no white cell yet: no rate to extrapolate from
                return None
            per_field = self._white / self._fields
            needed = math.ceil((p.white_cells - self._white) / per_field)
        elif p.fields is None:
            return left
        else:
            needed = p.fields - self._fields
        return needed if left is None else min(needed, left)

    @property
    def progress(self) -> Progress:
        p = self.protocol
        stop = self._reason is not None
        return Progress(
            mode=p.mode, stop=stop, reason=self._reason, white_cells=self._white,
            fields=self._fields, rejected=self._rejected,
            target=p.white_cells if p.mode == Mode.DIFFERENTIAL else p.fields,
            more_fields=0 if stop else self._more_fields())
