"""The demo is honest: on synthetic fields the bundled models' counts match the exact truth."""

import numpy as np
import pytest

from edge.capture.synthetic import SyntheticSource
from edge.config import MODELS_DIR
from edge.inference.detector import Detector
from tests.conftest import BUNDLED_MODEL


@pytest.mark.parametrize("model", [BUNDLED_MODEL, MODELS_DIR / "detector-relu-int8.onnx"],
                         ids=["default", "relu-int8"])
def test_bundled_model_counts_synthetic_fields_like_the_renderer_truth(model):
    detector = Detector(model)  # operating threshold from the manifest
    wbc_exact, rbc_rel = [], []
    for frame in SyntheticSource(count=50, seed=2026).frames():
        counts = detector(frame.image).detections.counts(3)
        truth = frame.truth.counts(3)
        wbc_exact.append(counts[0] == truth[0])
        rbc_rel.append(abs(int(counts[1]) - int(truth[1])) / max(int(truth[1]), 1))
    assert np.mean(wbc_exact) >= 0.90, f"WBC exact in {np.mean(wbc_exact):.0%} of fields"
    assert np.mean(rbc_rel) <= 0.15, f"RBC mean relative error {np.mean(rbc_rel):.1%}"
