"""The stain check at the end of a run: the session's stored white-cell crops (the exact
classifier inputs) give its stain shift (`edge.inference.stain`), stored with whether it lies
beyond what the training labs' own sessions reach. Labels are never changed by it."""

from __future__ import annotations

import cv2

from edge.core.files import utc_now
from edge.core.records import StainCheck
from edge.inference.classifier import Classifier
from edge.storage.store import Store


def check_stain(store: Store, session_id: str, classifier: Classifier) -> StainCheck | None:
    """Measure and store the session's stain check; None (nothing stored) when the model has
    no reference, a crop was not stored (storage.evidence off) or there are too few cells."""
    paths = store.crop_paths(session_id)
    if classifier.head is None or classifier.head.means() is None or not paths \
            or any(path is None for path in paths):
        return None
    crops = []
    for path in paths:
        image = cv2.imread(str(store.data_dir / path))
        if image is None:  # evidence removed or damaged: no check rather than a wrong one
            return None
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    found = classifier.stain_shift(classifier.embeddings(crops))
    if found is None:
        return None
    reference = classifier.head.reference_distance
    check = StainCheck(cells=found.cells, distance=round(found.distance, 4),
                       reference_distance=reference,
                       unfamiliar=reference is not None and found.distance > reference,
                       checked_at=utc_now())
    store.add_stain_check(session_id, check)
    return check
