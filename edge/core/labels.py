"""Canonical class names shared by the device, training and export."""

DETECTOR_CLASSES: tuple[str, ...] = ("WBC", "RBC", "Platelets")

_ALIASES = {"wbc": "WBC", "rbc": "RBC", "platelets": "Platelets", "platelet": "Platelets"}


def canonical_class(name: str) -> int:
    """Index in DETECTOR_CLASSES for a dataset's class name (case and plural tolerant)."""
    try:
        return DETECTOR_CLASSES.index(_ALIASES[name.strip().lower()])
    except KeyError:
        raise ValueError(
            f"unknown cell class {name!r}; expected one of {DETECTOR_CLASSES}"
        ) from None
