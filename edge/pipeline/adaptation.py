"""Session adaptation at the end of a run: the session's stored white-cell crops (the exact
classifier inputs) give its stain shift (`edge.inference.adapt`), and every cell is labelled
again with it. The runner's per-cell labels stay as they were; the adapted labels are stored
beside them and become the session's labels (`edge.storage.store`)."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from edge.core.files import utc_now
from edge.core.records import AdaptationRecord
from edge.inference.adapt import UNFAMILIAR_FACTOR
from edge.inference.classifier import Classifier
from edge.pipeline.second_stage import white_cell_class
from edge.storage.store import Store


def decode_shift(text: str) -> np.ndarray:
    """A stored shift (base64 float32) as an array."""
    return np.frombuffer(base64.b64decode(text), "<f4").astype(np.float32)


def adapt_session(store: Store, session_id: str, classifier: Classifier
                  ) -> AdaptationRecord | None:
    """Estimate and store the session's adaptation; None (nothing stored) when the model has
    no reference, a crop was not stored (storage.evidence off) or there are too few cells."""
    cells = store.cell_crops(session_id)
    if classifier.head is None or classifier.head.means() is None or not cells \
            or any(path is None for _, path in cells):
        return None
    crops = []
    for _, path in cells:
        image = cv2.imread(str(store.data_dir / path))
        if image is None:  # evidence removed or damaged: keep the per-cell labels
            return None
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    embeddings = classifier.embeddings(crops)
    found = classifier.adaptation(embeddings)
    if found is None:
        return None
    probs = classifier.head_probabilities(embeddings, found.shift)
    labels = []
    for (cell_id, _), p in zip(cells, probs, strict=True):
        k = white_cell_class(classifier.classes, p)
        labels.append((cell_id, classifier.classes[k], float(p[k])))
    reference = classifier.head.reference_distance
    record = AdaptationRecord(
        cells=found.cells, distance=round(found.distance, 4), reference_distance=reference,
        unfamiliar=reference is not None and found.distance > UNFAMILIAR_FACTOR * reference,
        shift=base64.b64encode(found.shift.astype("<f4").tobytes()).decode(),
        adapted_at=utc_now())
    store.add_adaptation(session_id, record, labels)
    return store.adaptation(session_id)
