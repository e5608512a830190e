"""Model manifests: the JSON beside every model file that says what it is and how it was made.

A model is used only after its manifest is read and checked whole (`verify_model`): valid
UTF-8 JSON of the right shape, naming the file beside it, whose sha256 matches, and (when the
profile requires it) signed by a trusted key (`edge.inference.signing`). Its digest covers
the model *and* the manifest, so a manifest edited after export (classes swapped, threshold
changed) gives another digest: that is what a session records beside the file's sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.head import LinearHead
from edge.inference.signing import check_signature

MANIFEST_FORMAT = "hemascope-model/1"
DIGEST_FORMAT = b"hemascope-model-digest/1\n"
MAX_MANIFEST_BYTES = 16 * 2**20  # a manifest with a calibrated head is about 60 KB
MIN_INPUT, MAX_INPUT = 16, 4096  # model input side in pixels (a 4096 input is 200 MB)
_RESTORE = "restore the manifest that came with the model, or re-export both together"


class ModelInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    height: int = Field(ge=MIN_INPUT, le=MAX_INPUT)
    width: int = Field(ge=MIN_INPUT, le=MAX_INPUT)
    layout: Literal["NCHW"] = "NCHW"
    color: Literal["RGB"] = "RGB"
    scale: float = Field(1 / 255, gt=0)
    letterbox_pad: int = Field(114, ge=0, le=255)
    # "letterbox": keep aspect, pad (detector); "area": cv2 INTER_AREA resize (classifier).
    resize: Literal["letterbox", "area"] = "letterbox"
    # "dyes/2" (`edge.inference.dyes.METHOD`): each resized image is redrawn in the canonical
    # stain's two dyes before the graph (`edge.inference.dyes.normalise`), as in training.
    stain: Literal["as-is", "dyes/2"] = "as-is"
    # Range of red-cell diameters, in input pixels, of the fields a detector was validated on
    # (5th-95th percentile of each field's median): the runner brings a field whose red cells
    # fall outside it into it (None: never rescales).
    rbc_diameter: tuple[float, float] | None = None

    @field_validator("rbc_diameter")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 < value[0] <= value[1]:
            raise ValueError("must be (low, high) with 0 < low <= high")
        return value


class ModelThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confidence: float = Field(0.25, gt=0, lt=1)
    iou: float = Field(0.7, gt=0, le=1)


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
    classes: list[str] = Field(min_length=1)
    input: ModelInput
    thresholds: ModelThresholds = ModelThresholds()
    file: str  # the model file's name: it sits beside the manifest
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
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

    @field_validator("classes")
    @classmethod
    def _distinct_names(cls, classes: list[str]) -> list[str]:
        if any(not c.strip() for c in classes) or len(set(classes)) != len(classes):
            raise ValueError("class names must be distinct and not empty")
        return classes

    @field_validator("file")
    @classmethod
    def _bare_name(cls, name: str) -> str:
        if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(f"{name!r} is not a file name (the model sits beside its manifest: "
                             "no folders, no '..')")
        return name


@dataclass(frozen=True)
class VerifiedModel:
    """A model file whose manifest was read, checked and matched (`verify_model`)."""

    manifest: ModelManifest
    digest: str  # sha256 over the model file's sha256 and the canonical manifest
    signer: str | None  # the trusted public key whose signature was verified; None: not checked


def manifest_path(model: Path) -> Path:
    """detector.onnx -> detector.json"""
    return model.with_suffix(".json")


def write_manifest(model: Path, manifest: ModelManifest) -> Path:
    path = manifest_path(model)
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    return path


def canonical_manifest(raw: dict[str, Any]) -> bytes:
    """The one byte form of a parsed manifest: sorted keys, no spaces, ASCII escapes (so
    reformatting the file does not change a digest, and any change of a value does)."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def model_digest(file_sha256_hex: str, raw_manifest: dict[str, Any]) -> str:
    """sha256 of b"hemascope-model-digest/1\\n" + the model file's hex sha256 + b"\\n" + the
    canonical manifest: what a session records and a signature signs."""
    return hashlib.sha256(DIGEST_FORMAT + file_sha256_hex.encode() + b"\n"
                          + canonical_manifest(raw_manifest)).hexdigest()


def read_manifest(path: Path) -> tuple[ModelManifest, dict[str, Any]]:
    """The manifest at `path`, validated, and the parsed JSON it came from; anything wrong
    (unreadable, too large, not UTF-8, not JSON, a wrong or missing key) is one line."""
    def invalid(why: str) -> HemascopeError:
        return HemascopeError(f"manifest {path} is invalid: {why}", _RESTORE)

    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise HemascopeError(f"cannot read manifest {path} ({exc.strerror})", _RESTORE) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise invalid(f"larger than {MAX_MANIFEST_BYTES // 2**20} MB")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise invalid(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise invalid(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise invalid("nested too deeply") from None
    if not isinstance(raw, dict):
        raise invalid("not a JSON object")
    try:
        return ModelManifest.model_validate(raw), raw
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        raise invalid(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None


def verify_model(model: Path, trusted_keys: Sequence[str] | None = None) -> VerifiedModel:
    """Read and check the manifest beside `model`: valid, naming this very file, whose
    sha256 matches; with `trusted_keys` (the profile requires signatures), also signed by
    one of them over model and manifest."""
    if not model.is_file():
        raise HemascopeError(f"model file not found: {model}",
                             "check model.detector in the profile, or reinstall hemascope")
    mpath = manifest_path(model)
    if not mpath.is_file():
        raise HemascopeError(f"model {model} has no manifest {mpath.name}",
                             "export the model with `hemascope export onnx`, which writes one")
    manifest, raw = read_manifest(mpath)
    actual = file_sha256(model)
    if actual != manifest.sha256:
        raise HemascopeError(
            f"model {model.name} sha256 {actual[:12]}… does not match its manifest "
            f"({manifest.sha256[:12]}…): the file is corrupt or was replaced",
            "restore the model file that matches its manifest, or re-export both together",
        )
    if manifest.file != model.name:
        raise HemascopeError(f"manifest {mpath.name} describes {manifest.file!r}, not "
                             f"{model.name!r}", "keep each model beside its own manifest "
                             "(export again with --out to rename a model)")
    digest = model_digest(actual, raw)
    signer = None
    if trusted_keys is not None:
        signer = check_signature(model, digest, trusted_keys)
    return VerifiedModel(manifest, digest, signer)


def load_verified(model: Path) -> ModelManifest:
    """The checked manifest of `model` (`verify_model` without a signature policy)."""
    return verify_model(model).manifest


def check_input_shape(manifest: ModelManifest, input_shape: Sequence[int], name: str) -> None:
    """Refuse a manifest whose input size is not the model's own (-1: a dynamic dimension)."""
    expected = (3, manifest.input.height, manifest.input.width)
    actual = tuple(input_shape[1:])
    if len(actual) != 3 or any(a not in (e, -1) for a, e in zip(actual, expected, strict=True)):
        raise HemascopeError(
            f"manifest of {name} says input 3x{expected[1]}x{expected[2]} but the model takes "
            f"{'x'.join(str(d) for d in actual)}", _RESTORE)
