"""Fuzz model manifests with the real bundled models (issue #20); writes JSON.

Cases (hypothesis, seeded): the manifest of each bundled model (detector fp32 and int8, WBC
differential, ALL subtype) with one to three edits (a value replaced by any JSON value or a
neighbour's, a key deleted or added), or its bytes flipped, cut or grown. Each is written
beside a link to the real model and loaded as a run loads it (`Detector` or `Classifier`:
`verify_model`, then the checks against the ONNX graph); a model that loads is run on a
synthetic field (a detector) or on crops (a classifier), where a wrong class list or input
size would fail. The onnxruntime session of each model is created once and reused (only its
construction is cached: every case still reads, verifies and checks its manifest). A refusal
is a HemascopeError; anything else is a traceback.

  python scripts/fuzz_manifests.py --cases 10000 --seed 0 --json docs/bench/fuzz-manifests.json
"""

from __future__ import annotations

import functools
import json

import numpy as np
from hypothesis import strategies as st

from edge.capture.synthetic import SyntheticSource
from edge.config import MODELS_DIR
from edge.core.errors import HemascopeError
from edge.core.frame import Frame
from edge.inference import backends, classifier, detector
from scripts.fuzzing import Campaign, flipped, mutated, run_script, workdir

MODELS = ["detector.onnx", "detector-relu-int8.onnx", "wbc-differential.onnx",
          "all-subtype.onnx"]
WORK = workdir("manifests")
for _name in MODELS:
    (WORK / _name).symlink_to(MODELS_DIR / _name)
_cached = functools.cache(backends.load_backend)
detector.load_backend = classifier.load_backend = _cached  # type: ignore[attr-defined]
_frame = next(iter(SyntheticSource(count=1, seed=0).frames()))
FIELD = _frame.image if isinstance(_frame, Frame) else np.zeros((480, 640, 3), np.uint8)


def _manifests(name: str) -> st.SearchStrategy[tuple[str, bytes]]:
    raw = (MODELS_DIR / name).with_suffix(".json").read_bytes()
    doc = json.loads(raw)
    return st.tuples(st.just(name), st.one_of(
        mutated(doc).map(lambda d: json.dumps(d, allow_nan=True).encode()),
        mutated(doc).map(lambda d: json.dumps(d, allow_nan=True).encode()),
        flipped(raw)))


MANIFESTS = st.one_of(*(_manifests(name) for name in MODELS))


def check(case: tuple[str, bytes]) -> str:
    """Load the model with this manifest as a run does, then use it once."""
    name, manifest = case
    model = WORK / name
    model.with_suffix(".json").write_bytes(manifest)
    if name.startswith("detector"):
        found = detector.Detector(model, threads=1)(FIELD).detections
        return f"{name}: loaded, {len(found)} cells on the synthetic field"
    model_ = classifier.Classifier(model, threads=1)
    for crop in (FIELD[:200, :200], np.zeros((7, 300, 3), np.uint8)):
        model_(crop)
    return f"{name}: loaded, crops classified"


def campaign() -> Campaign:
    return Campaign("manifests", (HemascopeError,))


def main() -> None:
    run_script(__doc__, campaign(), MANIFESTS, check)


if __name__ == "__main__":
    main()
