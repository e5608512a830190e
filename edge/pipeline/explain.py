"""Why a classifier decided what it did: the occlusion map (`edge.inference.occlusion`) of
the exact input it saw, read back from the session's evidence, beside the stored decision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from edge.core.errors import HemascopeError
from edge.core.labels import FieldStatus
from edge.core.records import SessionRecord
from edge.inference.classifier import Classifier
from edge.inference.occlusion import occlusion_map, overlay
from edge.pipeline.evidence import write_image_atomic
from edge.pipeline.second_stage import white_cell_class
from edge.storage import layout
from edge.storage.store import Store


@dataclass(frozen=True)
class Explanation:
    what: str  # "cell 3 of field 12" or "field 12"
    model: str
    stored: tuple[str, float]  # decision stored by the runner
    recomputed: tuple[str, float]  # the same model on the same stored input, now
    image: Path


def session_classifier(session: SessionRecord, role: str, model_path: Path) -> Classifier:
    """The installed classifier, refused unless it is the one the session used."""
    used = next((m for m in session.classifiers if m["role"] == role), None)
    if used is None:
        raise HemascopeError(f"session {session.id[:12]} ran without the {role} classifier",
                             "explain a session that ran with it enabled")
    classifier = Classifier(model_path)
    if classifier.sha256 != used["sha256"]:
        raise HemascopeError(
            f"the session used {used['file']} sha256 {used['sha256'][:12]}, the profile points "
            f"at {model_path.name} sha256 {classifier.sha256[:12]}",
            "point the profile at the model the session used (see its report)")
    return classifier


def explain(store: Store, session_id: str, field_idx: int, cell: int | None,
            wbc_model: Path, all_model: Path, out: Path) -> Explanation:
    """Occlusion map of a stored WBC decision (`cell` given) or ALL field decision."""
    session = store.session(session_id)
    rows = [f for f in store.fields(session.id) if f.idx == field_idx]
    if not rows or rows[0].status is not FieldStatus.COUNTED:
        raise HemascopeError(f"field {field_idx} of session {session.id[:12]} was not counted",
                             "pick a counted field from `hemascope report`")
    field = rows[0]
    if cell is not None:
        cells = store.cells(session.id, field_idx)
        if not 0 <= cell < len(cells) or cells[cell].label is None:
            labelled = [i for i, c in enumerate(cells) if c.label is not None]
            raise HemascopeError(f"field {field_idx} has no classified cell {cell}",
                                 f"classified cells of this field: {labelled or 'none'}")
        row = cells[cell]
        if row.crop_path is None:
            raise HemascopeError(f"cell {cell} has no stored crop (storage.evidence was off)",
                                 "explanations need the stored classifier input")
        classifier = session_classifier(session, "wbc", wbc_model)
        source = store.data_dir / row.crop_path
        stored = (row.label, float(row.label_score))
        what = f"cell {cell} of field {field_idx}"
    else:
        if field.subtype is None:
            raise HemascopeError(f"field {field_idx} has no ALL subtype scores",
                                 "pass --cell N for a white cell, or explain a session run with "
                                 "classifiers.all_subtype = true")
        if field.evidence_path is None:
            raise HemascopeError(f"field {field_idx} has no stored ALL input (storage.evidence "
                                 "was off)", "explanations need the stored classifier input")
        classifier = session_classifier(session, "all_subtype", all_model)
        source = store.data_dir / layout.field_input(session.id, field_idx)
        probs = field.subtype
        best = max(probs, key=probs.get)
        stored = (best, float(probs[best]))
        what = f"field {field_idx}"
    image = cv2.imread(str(source))
    if image is None:
        raise HemascopeError(f"stored classifier input {source} is missing or unreadable",
                             "restore the session's evidence folder from backup or the hub")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    probs_now = classifier.probabilities([rgb])[0]
    cid = classifier.classes.index(stored[0])
    patch = max(4, classifier.size // 8)
    heat = occlusion_map(classifier, rgb, cid, patch, max(2, patch // 2))
    caption = (f"{what}: {stored[0]} p={stored[1]:.3f}  (red: covering it lowers p most, "
               f"max drop {heat.max():.3f})")
    write_image_atomic(out, overlay(rgb, heat, caption))
    best_now = (white_cell_class(classifier.classes, probs_now) if cell is not None
                else int(probs_now.argmax()))
    return Explanation(what, classifier.manifest.file, stored,
                       (classifier.classes[best_now], float(probs_now[best_now])), out)
