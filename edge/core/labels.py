"""Canonical names shared by the device, the hub, training and export: cell classes and the
status of fields and sessions."""

from enum import StrEnum

WBC, RBC, PLATELETS = "WBC", "RBC", "Platelets"
DETECTOR_CLASSES: tuple[str, ...] = (WBC, RBC, PLATELETS)  # in the detector's class order
# Differential classes that are not white cells: a detected white-cell box is never given
# one, but a high probability for it still flags the cell for review (see second_stage).
NOT_WHITE_CELLS: tuple[str, ...] = ("platelet",)

_ALIASES = {"wbc": WBC, "rbc": RBC, "platelets": PLATELETS, "platelet": PLATELETS}


def canonical_class(name: str) -> int:
    """Index in DETECTOR_CLASSES for a dataset's class name (case and plural tolerant)."""
    try:
        return DETECTOR_CLASSES.index(_ALIASES[name.strip().lower()])
    except KeyError:
        raise ValueError(
            f"unknown cell class {name!r}; expected one of {DETECTOR_CLASSES}"
        ) from None


class FieldStatus(StrEnum):
    """What became of a field: counted, rejected by quality control, or skipped (unreadable)."""

    COUNTED = "counted"
    REJECTED = "rejected"
    SKIPPED = "skipped"


class SessionStatus(StrEnum):
    """A session runs, then ends finished or interrupted (stopped early, fields kept)."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
