"""Model manifests: the JSON beside every model file that says what it is and how it was made.

The runner refuses a model whose sha256 does not match its manifest, and every stored count
records the digest of the model that made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.head import LinearHead

MANIFEST_FORMAT = "hemascope-model/1"


class ModelInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    height: int
    width: int
    layout: Literal["NCHW"] = "NCHW"
    color: Literal["RGB"] = "RGB"
    scale: float = 1 / 255
    letterbox_pad: int = 114
    # "letterbox": keep aspect, pad (detector); "area": cv2 INTER_AREA resize (classifier).
    resize: Literal["letterbox", "area"] = "letterbox"
    # Range of red-cell diameters, in input pixels, of the fields a detector was validated on
    # (5th-95th percentile of each field's median): the runner brings a field whose red cells
    # fall outside it into it (None: never rescales).
    rbc_diameter: tuple[float, float] | None = None


class ModelThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confidence: float = 0.25
    iou: float = 0.7


Runtime = Literal["onnxruntime", "litert", "tensorrt"]


class GateResult(BaseModel):
    """The export accuracy gate: the artifact measured through the runtime that runs it,
    against its reference (the fp32 ONNX through onnxruntime) on the same validation data."""

    model_config = ConfigDict(extra="forbid")
    passed: bool
    metric: str  # e.g. "mAP50"
    value: float
    reference_value: float
    drop: float  # reference_value - value
    max_drop: float  # the allowed drop: the default tolerance, or --accept-drop when given
    accepted_drop: float | None = None  # --accept-drop, recorded when the operator gave one
    reference: dict[str, str]  # file, sha256 and runtime of the reference model
    backend: str  # runtime (and delegate) the artifact was measured through
    data: dict[str, Any]  # folder, split, images, digest of the validation data


class ModelManifest(BaseModel):
    """What the runner needs to use a model, plus its provenance (kept as given)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["hemascope-model/1"] = MANIFEST_FORMAT
    task: Literal["detect", "classify"]
    classes: list[str]
    input: ModelInput
    thresholds: ModelThresholds = ModelThresholds()
    file: str
    sha256: str
    precision: str = "fp32"
    runtime: Runtime = "onnxruntime"
    gate: GateResult | None = None  # None: not gated (e.g. the fp32 reference itself)
    # A classifier whose graph also returns its embedding may carry its head here: the device
    # then computes probabilities from the embedding with this head (site calibration).
    head: LinearHead | None = None
    calibration: dict[str, Any] = {}  # set by `hemascope calibrate`: base model, sessions, ...
    training: dict[str, Any] = {}
    export: dict[str, Any] = {}
    metrics: dict[str, Any] = {}


def manifest_path(model: Path) -> Path:
    """detector.onnx -> detector.json"""
    return model.with_suffix(".json")


def write_manifest(model: Path, manifest: ModelManifest) -> Path:
    path = manifest_path(model)
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    return path


def load_verified(model: Path) -> ModelManifest:
    """Read the manifest beside `model` and check the model file's sha256 against it."""
    if not model.is_file():
        raise HemascopeError(f"model file not found: {model}",
                             "check model.detector in the profile, or reinstall hemascope")
    mpath = manifest_path(model)
    if not mpath.is_file():
        raise HemascopeError(f"model {model} has no manifest {mpath.name}",
                             "export the model with `hemascope export onnx`, which writes one")
    try:
        manifest = ModelManifest.model_validate(json.loads(mpath.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise HemascopeError(f"manifest {mpath} is invalid: {first}",
                             "restore the manifest that came with the model") from exc
    actual = file_sha256(model)
    if actual != manifest.sha256:
        raise HemascopeError(
            f"model {model.name} sha256 {actual[:12]}… does not match its manifest "
            f"({manifest.sha256[:12]}…): the file is corrupt or was replaced",
            "restore the model file that matches its manifest, or re-export both together",
        )
    return manifest
