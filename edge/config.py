"""Device profiles: one TOML file per device, validated strictly (unknown keys are errors).

Every field has a default, and the defaults are the `workstation-dev` profile, so hemascope
runs with no profile at all on a machine without a camera.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_dir
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.clinical.differential import DEFAULT_MAX_WIDTH
from edge.clinical.estimates import REFERENCE_RBC_PER_UL
from edge.clinical.flags import Thresholds
from edge.clinical.stop_rule import Mode, Protocol
from edge.core.errors import HemascopeError
from edge.core.files import read_regular_file

MODELS_DIR = Path(__file__).parent / "models"
BUNDLED_DETECTOR = MODELS_DIR / "detector.onnx"
BUNDLED_WBC_CLASSIFIER = MODELS_DIR / "wbc-differential.onnx"
BUNDLED_ALL_CLASSIFIER = MODELS_DIR / "all-subtype.onnx"
QC_WORK_SIDE = 240  # short side (px) of the image the quality scores are computed on
MAX_CELL_DENSITY = 2.8  # twice the densest TXL-PBC val field (1.40), see docs/qc.md
MAX_IMAGE_ASPECT = 8  # long side / short side: cameras are 1:1 to 16:9, a 2x2 mosaic the same
# Sane ranges of profile numbers: a value past them is a typo or an attack (onnxruntime
# crashes with 100000 threads; an int over 2**63 overflows C; inf never ends a wait).
MAX_THREADS = 256
MAX_FIELDS = 100_000  # fields of one session
MAX_IMAGE_SIDE = 16384  # pixels
MAX_PROFILE_BYTES = 2**20  # the shipped profiles are 1-4 KB
MAX_PROFILE_DEPTH = 8  # tables and arrays within each other; profiles use 3


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DeviceConfig(_Section):
    name: str = Field("workstation-dev", min_length=1, max_length=100,
                      description="Profile name, stored with every session.")


class SourceConfig(_Section):
    default: str = Field("synthetic", max_length=4096, description=(
        "Source used when `hemascope run` gets no --source: synthetic, folder:PATH, "
        "video:PATH or camera:INDEX."))
    synthetic_fields: int = Field(20, ge=1, le=MAX_FIELDS,
        description="Fields a synthetic source renders.")
    synthetic_seed: int = Field(0, ge=0, le=2**32 - 1,
        description="Seed of the synthetic renderer.")
    settle: bool = Field(False, description=(
        "Manual scanning: watch the live stream and take one field each time the stage has "
        "moved and settled (see [capture]); `hemascope run --settle` does the same."))
    max_image_mb: float = Field(50, gt=0, le=1024, description=(
        "Largest image file a folder source reads (MB); a larger file is skipped with its "
        "reason, before it is read. 50 holds a 20-megapixel camera's PNG or JPEG; an "
        "uncompressed 20-megapixel BMP or TIFF (60 MB) needs more."))
    max_image_megapixels: float = Field(25, gt=0, le=1000, description=(
        "Largest image a folder source decodes (megapixels, width x height read from the file "
        "header before decoding; a larger one is skipped with its reason). 25 holds the "
        "largest microscope cameras in use (20 MP, 5472x3648; the Pi HQ camera is 12.3 MP) "
        "and bounds a full decode to 75 MB (see max_decoded_megapixels). An image with one "
        f"side over {MAX_IMAGE_ASPECT}x the other is skipped too: it is no field of view, and "
        "scaling it to the quality-control size would take gigabytes."))
    max_decoded_megapixels: float = Field(5, gt=0, description=(
        "A folder image over this size (megapixels) is decoded at 1/2, 1/4 or 1/8 of its "
        "width and height, the least that brings it within this (a JPEG by libjpeg's scaled "
        "decoding, never whole): a 20 MP camera field (5472x3648) is counted and stored at "
        "2736x1824, the Pi HQ camera's 12.3 MP at 3 MP, 24-25 MP at 1.5 MP; the detector "
        "sees 640 px anyway. This keeps a run's peak memory under 300 MB with camera files up "
        "to 50 MB (8: 24 MP at 6 MP, and up to 336 MB; docs/reliability.md)."))


class CameraConfig(_Section):
    width: int = Field(640, ge=64, le=MAX_IMAGE_SIDE,
        description="Requested capture width in pixels.")
    height: int = Field(480, ge=64, le=MAX_IMAGE_SIDE,
        description="Requested capture height in pixels.")
    fps: float = Field(15, gt=0, le=1000, description="Requested frame rate.")
    warmup_frames: int = Field(5, ge=0, le=1000,
        description="Frames discarded after opening the camera.")
    max_fields: int = Field(100, ge=1, le=MAX_FIELDS, description=(
        "Fields taken from a live camera per session (with --settle: settled fields)."))
    reconnect_attempts: int = Field(8, ge=0, le=1000, description=(
        "Times a lost camera is reopened before the session stops (stored fields are kept)."))
    reconnect_backoff_s: float = Field(0.5, gt=0, le=30, description=(
        "Wait before the first reopen; doubles per failed attempt, up to 30 s."))


class PiCameraConfig(_Section):
    exposure_us: int | None = Field(None, gt=0, le=10**9, description=(
        "Fixed exposure time in microseconds; empty: automatic (not advised: fields differ)."))
    analogue_gain: float | None = Field(None, ge=1.0, le=64, description=(
        "Fixed sensor gain; empty: automatic."))
    colour_gains: tuple[float, float] | None = Field(None, description=(
        "Locked white balance (red gain, blue gain), measured once on an empty bright field; "
        "empty: automatic white balance."))
    lens_position: float | None = Field(None, ge=0, le=100, description=(
        "Fixed lens position (dioptres) for cameras with a motorised lens; focus is the "
        "microscope stage, so autofocus stays off. Empty: leave the lens alone."))


class SettleConfig(_Section):
    """When a hand-moved stage counts as settled (the `[capture]` profile section)."""

    motion_threshold: float = Field(1.0, gt=0, le=100, description=(
        "Mean absolute difference between two frames, in percent of the local brightness "
        "(frames shrunk to `downscale_width`, smooth illumination removed), above which the "
        "stage is moving. Checked frame to frame and against the first frame of the still run, "
        "so slow pans are caught too. On a 640x480 smear, sensor noise of sd 2 grey levels "
        "gives about 0.3 and a 3 px shift about 1.2."))
    still_frames: int = Field(8, ge=2, le=1000, description=(
        "Consecutive still frames after which a stop is settled and its field taken "
        "(8: 0.53 s at 15 fps, 0.27 s at 30 fps)."))
    downscale_width: int = Field(80, ge=32, le=640, description=(
        "Width in pixels frames are shrunk to before comparing; smaller averages away more "
        "sensor noise and costs less CPU."))
    min_shift: float = Field(0.1, gt=0, le=1, description=(
        "Share of the field width the view must have moved since the last field taken for a "
        "settled stop to be taken; below it the stop is the same field and is not taken again."))


class QCConfig(_Section):
    """Field quality thresholds (profile section `[qc]`); defaults calibrated in docs/qc.md."""

    enabled: bool = Field(True, description="Run field quality control; off: every field counts.")
    min_focus: float = Field(1.7, ge=0, description=(
        "Lowest focus score: standard deviation of the Laplacian of the grey field (scaled to "
        f"{QC_WORK_SIDE} px on its short side) in percent of its mean brightness."))
    max_highlights: float = Field(0.14, ge=0, le=1, description=(
        "Highest share of clipped bright pixels (grey >= 250): over-exposure."))
    max_shadows: float = Field(0.083, ge=0, le=1, description=(
        "Highest share of crushed dark pixels (grey <= 5): lamp off, closed diaphragm, "
        "vignetting. A camera that shows the round field stop needs more, or a crop."))
    min_brightness: float = Field(83, ge=0, le=255, description=(
        "Lowest background level: 95th percentile of the grey field (0-255), which is the "
        "glass and plasma between the cells in a smear. Below it: under-exposed or lamp off."))
    min_contrast: float = Field(3.3, ge=0, description=(
        "Lowest contrast: standard deviation of grey in percent of its mean. Below it: a blank "
        "or uniform frame (no smear)."))
    min_saturation: float = Field(6.5, ge=0, le=255, description=(
        "Lowest mean colour saturation (HSV S, 0-255): an unstained or washed-out field."))
    max_saturation: float = Field(200, ge=0, le=255, description=(
        "Highest mean colour saturation (HSV S, 0-255): a colour cast or a corrupted frame."))
    min_cells: int = Field(3, ge=0, le=100_000, description=(
        "Fewest detected cells (all classes) in a usable field: fewer is an empty field."))
    max_cell_density: float = Field(MAX_CELL_DENSITY, gt=0, description=(
        "Most detected cells per field area counted in red-cell units (cells x median red-cell "
        "diameter^2 / field area; about 0.5-1.5 in a good monolayer): more is a thick, "
        "overcrowded area. The field's own red cells are the ruler, so the limit holds for "
        "any objective and camera."))
    max_overlap: float = Field(0.79, ge=0, le=1, description=(
        "Highest share of the box-covered area covered by two or more boxes: cells piled up "
        "in a thick area of the smear."))
    duplicate_distance: int = Field(74, ge=0, le=255, description=(
        "Largest Hamming distance (of 255 bits) between the fingerprints of two fields for the "
        "second to be a re-capture of the first."))


class ModelConfig(_Section):
    detector: Path = Field(BUNDLED_DETECTOR, description=(
        "Detector model file (.onnx); its manifest (.json) must sit beside it."))
    input_size: int | None = Field(None, ge=32, le=4096, description=(
        "Expected square input size of the detector; the runner refuses a model of another "
        "size. Empty: accept the size in the model manifest."))


class SignaturesConfig(_Section):
    """Which models a device accepts (profile section `[signatures]`, docs/reliability.md)."""

    required: bool = Field(False, description=(
        "Refuse every model (detector and classifiers) without a valid ed25519 signature, by "
        "one of `trusted_keys`, over the model file and its manifest (`NAME.sig` beside it, "
        "written by `hemascope sign` or `hemascope export ... --sign KEY`). Needs the "
        "cryptography package: pip install 'hemascope[sign]'."))
    trusted_keys: list[str] = Field([], description=(
        "Public keys whose signatures are trusted: the base64 line printed by `hemascope keys "
        "generate` (44 characters)."))

    @field_validator("trusted_keys")
    @classmethod
    def _public_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if re.fullmatch(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=", key) is None:
                raise ValueError(f"{key[:60]!r} is not an ed25519 public key (base64 of 32 "
                                 "bytes, as `hemascope keys generate` prints it)")
        return keys

    @model_validator(mode="after")
    def _keys_when_required(self) -> SignaturesConfig:
        if self.required and not self.trusted_keys:
            raise ValueError("required = true needs at least one key in trusted_keys")
        return self

    def trusted(self) -> list[str] | None:
        """The keys a model must be signed by, or None when signatures are not required."""
        return list(self.trusted_keys) if self.required else None


class ClassifiersConfig(_Section):
    wbc: bool = Field(False, description=(
        "Classify every counted white cell (basophil, eosinophil, erythroblast, ig, lymphocyte, "
        "monocyte, neutrophil, platelet) from a crop around its box; the report then shows the "
        "differential."))
    wbc_model: Path = Field(BUNDLED_WBC_CLASSIFIER, description=(
        "WBC differential model (.onnx, manifest beside it)."))
    crop_rbc_diameters: float = Field(4.3, ge=1.5, le=10.0, description=(
        "Side of the square crop around a white cell, in red-cell diameters (the field's "
        "median whole red-cell box), so that crops cover the same area of smear whatever the "
        "optics and cell size stays a cue, as in the training crops: 4.3 is what a PBC "
        "training image covers (224 px, red cells about 52 px)."))
    all_subtype: bool = Field(False, description=(
        "Score every counted field for acute lymphoblastic leukemia subtypes (Benign, Early "
        "Pre-B, Pre-B, Pro-B); the report then shows the mean probabilities. For marrow or "
        "blood smears of patients under ALL work-up, with Wright-Giemsa staining."))
    all_model: Path = Field(BUNDLED_ALL_CLASSIFIER, description=(
        "ALL subtype model (.onnx, manifest beside it)."))
    threads: int = Field(1, ge=0, le=MAX_THREADS, description=(
        "Intra-op threads of each classifier (0: all cores). 1 is fastest in the runner: each "
        "multi-threaded onnxruntime session keeps its own spinning thread pool, and three "
        "of them on two cores made a field 2.3x slower than one thread each."))


class BackendConfig(_Section):
    type: Literal["onnxruntime", "litert", "tensorrt"] = Field("onnxruntime", description=(
        "Inference runtime, matching the model file: onnxruntime (.onnx; CUDA / TensorRT "
        "execution providers when installed), litert (.tflite; pip install 'hemascope[pi]') or "
        "tensorrt (.engine built on a Jetson)."))
    delegate: Literal["none", "edgetpu"] = Field("none", description=(
        "Accelerator for litert: edgetpu runs a *_edgetpu.tflite model on a Coral Edge TPU "
        "(needs libedgetpu.so.1)."))
    threads: int = Field(0, ge=0, le=MAX_THREADS, description=(
        "Intra-op threads of the detector's session (0: one per core, counting the threads "
        "that hand it the fields in flight, which share its pool)."))
    fields_in_flight: int | None = Field(None, ge=1, le=8, validate_default=True, description=(
        "Fields in the detector at once; empty: 2 with onnxruntime, 1 with litert and "
        "tensorrt (their interpreters take one call at a time). 2 keeps the cores busy while "
        "the runner reads, checks and stores fields: on 2 cores a field took about 1.1x the "
        "model's time for one frame, against 1.16x-1.19x with 1 (docs/benchmarks.md), for "
        "40-50 MB more memory and twice the time each field spends in the detector. Not yet "
        "measured on more than 2 cores."))

    @field_validator("fields_in_flight")
    @classmethod
    def _fields_in_flight_for_the_runtime(cls, value: int | None, info: ValidationInfo) -> int:
        runtime = info.data.get("type", "onnxruntime")
        if value is None:
            return 2 if runtime == "onnxruntime" else 1
        if value > 1 and runtime != "onnxruntime":
            raise ValueError(f"{runtime} runs one field at a time: set it to 1")
        return value

    def inference_threads(self) -> int:
        """Intra-op threads for the detector's session: `threads`, or else one per core. The
        fields in flight share the session's pool: each calls it from its own thread, which
        works too, so the pool gets one worker per core left (0: onnxruntime's choice, all
        cores, for one field)."""
        in_flight = self.fields_in_flight or 1
        if self.threads or in_flight == 1:
            return self.threads
        return max(1, len(os.sched_getaffinity(0)) - in_flight + 1)


class ThresholdsConfig(_Section):
    confidence: float | None = Field(None, gt=0, lt=1, description=(
        "Detection score threshold; empty: the operating threshold in the model manifest."))
    iou: float | None = Field(None, gt=0, lt=1, description="NMS IoU threshold; empty: manifest.")


class StorageConfig(_Section):
    data_dir: Path = Field(Path(user_data_dir("hemascope")), description=(
        "Folder for the SQLite database and evidence images."))
    evidence: bool = Field(True, description="Write an annotated JPEG per field.")
    jpeg_quality: int = Field(85, ge=30, le=100, description="Evidence JPEG quality.")
    min_free_mb: int = Field(200, ge=0, le=2**30, description=(
        "Refuse to start a session, or to store a field, below this free space (MB)."))
    reserve_mb: float = Field(16, ge=0, le=1024, description=(
        "Room kept allocated in the data dir (the file space.reserve, made before a session "
        "starts) and released when the disk fills, so that the session can still be closed "
        "and queued for sync (MB; a payload takes about 1.5 KB per field). A run refuses to "
        "start while the disk has no room for it. 0: no reserve."))


class PrivacyConfig(_Section):
    keep_clear_ids: bool = Field(False, description=(
        "Store sample and operator ids as typed. Off: the device stores only their "
        "pseudonyms (`pseudo:` + 16 hex, a keyed HMAC with the device secret in the data "
        "dir); `hemascope sessions --sample ID` still finds a sample. Sync always sends "
        "pseudonyms, whatever this says."))


class SyncConfig(_Section):
    hub_url: str | None = Field(None, max_length=2048, description=(
        "Clinic hub URL, e.g. https://hub.clinic/api; plain http:// only to 127.0.0.1 or "
        "localhost, so the token never crosses a network in clear text. Empty: sync disabled."))
    token_path: Path | None = Field(None, description=(
        "File holding this device's hub token; `hemascope sync set-token` writes it with "
        "mode 600, and a file other users can read is refused."))
    ca_file: Path | None = Field(None, description=(
        "CA certificate (PEM) that signed the hub's HTTPS certificate; empty: system CAs."))
    batch_size: int = Field(20, ge=1, le=500, description="Payloads per upload request.")
    batch_max_kb: int = Field(4096, ge=16, le=2**20, description=(
        "Payload bytes per upload request (KB); a larger single payload travels alone."))
    timeout_s: float = Field(30, gt=0, le=3600,
        description="Network timeout of one request (seconds).")
    retries: int = Field(8, ge=0, le=1000, description=(
        "Failed attempts in a row before `hemascope sync` stops; payloads stay pending."))
    backoff_s: float = Field(1.0, gt=0, le=3600, description=(
        "Delay before the first retry; doubles per failure, with random jitter."))
    backoff_max_s: float = Field(60, gt=0, le=86400, description="Longest delay between retries.")
    evidence: bool = Field(False, description=(
        "Include the annotated evidence JPEGs in session payloads (read from the profile the "
        "session ran with, when it is finished)."))
    evidence_max_kb: int = Field(512, ge=1, le=2**20, description=(
        "Evidence bytes per session payload (KB); images past it are listed as omitted."))


_T = Thresholds()  # the defaults: adult reference intervals (edge/clinical/flags.py)


class FlagsConfig(_Section):
    """Flag thresholds (profile section `[protocol.flags]`). Defaults: adult reference
    intervals of Dacie and Lewis Practical Haematology, 12th ed. (docs/clinical.md); set the
    local laboratory's intervals (they differ between populations)."""

    wbc_low_per_ul: float = Field(_T.wbc_low_per_ul, gt=0, description=(
        "Leukopenia below this white-cell estimate (cells/µL; adult reference 4.0-10.0 x "
        "10^9/L)."))
    wbc_high_per_ul: float = Field(_T.wbc_high_per_ul, gt=0, description=(
        "Leukocytosis above this white-cell estimate (cells/µL)."))
    platelets_low_per_ul: float = Field(_T.platelets_low_per_ul, gt=0, description=(
        "Thrombocytopenia below this platelet estimate (cells/µL; adult reference 150-410 x "
        "10^9/L)."))
    neutrophils_low_per_ul: float = Field(_T.neutrophils_low_per_ul, gt=0, description=(
        "Neutropenia below this many neutrophils per µL (white-cell estimate x share; adult "
        "reference 2.0-7.0 x 10^9/L; lower in many people of African ancestry)."))
    neutrophils_low_percent: float = Field(_T.neutrophils_low_percent, gt=0, le=100,
                                           description=(
        "Neutropenia below this share of classified white cells when there is no white-cell "
        "estimate (%; adult reference 40-80 %)."))
    lymphocytes_high_per_ul: float = Field(_T.lymphocytes_high_per_ul, gt=0, description=(
        "Lymphocytosis above this many lymphocytes per µL (adult reference 1.0-3.0 x 10^9/L)."))
    lymphocytes_high_percent: float = Field(_T.lymphocytes_high_percent, gt=0, le=100,
                                            description=(
        "Lymphocytosis above this share without a white-cell estimate (%; adult reference "
        "20-40 %)."))
    eosinophils_high_per_ul: float = Field(_T.eosinophils_high_per_ul, gt=0, description=(
        "Eosinophilia above this many eosinophils per µL (adult reference 0.02-0.5 x 10^9/L)."))
    eosinophils_high_percent: float = Field(_T.eosinophils_high_percent, gt=0, le=100,
                                            description=(
        "Eosinophilia above this share without a white-cell estimate (%; adult reference "
        "1-6 %)."))
    blasts_high_percent: float = Field(_T.blasts_high_percent, gt=0, le=100, description=(
        "Blasts at or above this share (%; the WHO threshold for acute leukaemia); only with a "
        "differential model that has a blast class."))
    min_fields: int = Field(_T.min_fields, ge=1, le=MAX_FIELDS, description=(
        "Too few fields: fewer accepted fields than this make the estimates unreliable."))

    def thresholds(self) -> Thresholds:
        return Thresholds(**self.model_dump())


class ProtocolConfig(_Section):
    """The session protocol (profile section `[protocol]`): when `hemascope run` stops, and
    what the report estimates and flags. See docs/clinical.md."""

    mode: Mode = Field(Mode.CBC, description=(
        "cbc: red cells, white cells and platelets per field and their estimates, over "
        "`fields` accepted fields (empty: every field the source gives); differential: stop at "
        "`white_cells` classified white cells (needs classifiers.wbc = true); all-screen: ALL "
        "subtype work-up over `fields` accepted fields (needs classifiers.all_subtype = true)."))
    white_cells: Literal[100, 200, 400] = Field(200, description=(
        "Differential target: classified white cells (100, 200 or 400). The run stops at the "
        "first accepted field that brings the count to it."))
    fields: int | None = Field(None, ge=1, le=MAX_FIELDS, description=(
        "Accepted fields a cbc or all-screen session counts before it stops (the issue's ALL "
        "work-up: 10-30); empty: every field the source gives."))
    max_fields: int | None = Field(None, ge=1, le=MAX_FIELDS, description=(
        "Field limit in every mode: stop after this many accepted fields even if the target is "
        "not reached. Fields rejected by quality control or unreadable never count towards any "
        "stop; a live camera also stops at camera.max_fields fields taken, rejected or not."))
    max_interval_percent: float = Field(100 * DEFAULT_MAX_WIDTH, gt=0, le=100, description=(
        "Widest acceptable 95 % interval of a differential class, in percentage points; a "
        "wider one marks the differential insufficient (20: a 100-cell count near 50 % passes, "
        "fewer cells do not)."))
    wbc_field_factor: float | None = Field(None, gt=0, description=(
        "White cells per µL of blood per white cell seen per field, from this device's "
        "calibration (analyser count / mean white cells per field on calibration smears); "
        "set `field_factor_source` with it. Empty: the red-cell ratio estimate (see "
        "`reference_rbc_per_ul`)."))
    platelet_field_factor: float | None = Field(None, gt=0, description=(
        "Platelets per µL per platelet seen per field, from this device's calibration, like "
        "`wbc_field_factor`. Empty: the red-cell ratio estimate."))
    field_factor_source: str | None = Field(None, min_length=1, max_length=500, description=(
        "Where the field factors come from (e.g. 'calibrated 2027-01-12 on 20 smears against "
        "the district analyser'); required with a factor, printed with every estimate."))
    reference_rbc_per_ul: float = Field(REFERENCE_RBC_PER_UL, gt=0, description=(
        "Without a calibrated factor, WBC/µL and platelets/µL are estimated by their ratio to "
        "the red cells counted in the same fields, times this red-cell count (cells/µL; "
        "default: the middle of the adult reference intervals, men 4.5-6.5 and women 3.9-5.6 x "
        "10^12/L, Hoffbrand and Moss, Essential Haematology). Anaemia makes such an estimate "
        "too high by the ratio of this value to the true red-cell count."))
    flags: FlagsConfig = FlagsConfig()

    def stop_protocol(self) -> Protocol:
        """What `hemascope run` stops on (edge.clinical.stop_rule)."""
        return Protocol(self.mode, self.white_cells, self.fields, self.max_fields)

    @model_validator(mode="after")
    def _factor_has_a_source(self) -> ProtocolConfig:
        if (self.wbc_field_factor or self.platelet_field_factor) and not self.field_factor_source:
            raise ValueError("a field factor needs field_factor_source (where it comes from)")
        return self


class Profile(_Section):
    device: DeviceConfig = DeviceConfig()
    source: SourceConfig = SourceConfig()
    camera: CameraConfig = CameraConfig()
    picamera: PiCameraConfig = PiCameraConfig()
    capture: SettleConfig = SettleConfig()
    qc: QCConfig = QCConfig()
    model: ModelConfig = ModelConfig()
    classifiers: ClassifiersConfig = ClassifiersConfig()
    signatures: SignaturesConfig = SignaturesConfig()
    backend: BackendConfig = BackendConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()
    storage: StorageConfig = StorageConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    sync: SyncConfig = SyncConfig()
    protocol: ProtocolConfig = ProtocolConfig()

    @model_validator(mode="after")
    def _protocol_has_its_classifier(self) -> Profile:
        needs = {Mode.DIFFERENTIAL: ("wbc", self.classifiers.wbc),
                 Mode.ALL_SCREEN: ("all_subtype", self.classifiers.all_subtype)}
        if self.protocol.mode in needs and not needs[self.protocol.mode][1]:
            key = needs[self.protocol.mode][0]
            raise ValueError(f"protocol.mode = '{self.protocol.mode}' needs classifiers.{key} "
                             "= true")
        return self


def _close_key(loc: tuple[int | str, ...]) -> str | None:
    """The known key nearest to a mistyped one ('camera.widht' -> 'camera.width'), if any."""
    model: type[BaseModel] = Profile
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type)
                                 and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return ".".join([*map(str, loc[:-1]), close[0]]) if close else None


def load_profile(path: Path | None) -> Profile:
    """Load and validate a profile; None gives the built-in workstation-dev defaults.

    The file must be a regular UTF-8 TOML file of at most `MAX_PROFILE_BYTES`, nested at most
    `MAX_PROFILE_DEPTH` deep; anything wrong with it is one HemascopeError. Relative paths
    inside the file are resolved against the file's folder.
    """
    if path is None:
        return Profile()
    data = _read_toml(path)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        close = _close_key(err["loc"]) if err["type"] == "extra_forbidden" else None
        fix = f"did you mean '{close}'? " if close else ""
        field = f"field '{where}': " if where else ""
        raise HemascopeError(f"profile {path}: {field}{message}",
                             f"{fix}fix or remove that field (see docs/profiles.md)") from None
    base = path.resolve().parent
    for section, key in (("model", "detector"), ("classifiers", "wbc_model"),
                         ("classifiers", "all_model"), ("storage", "data_dir"),
                         ("sync", "token_path"), ("sync", "ca_file")):
        value = getattr(getattr(profile, section), key)
        if isinstance(value, Path) and key in data.get(section, {}):
            setattr(getattr(profile, section), key, _resolve(path, f"{section}.{key}", base,
                                                             value))
    return profile


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed profile file, or a HemascopeError saying what is wrong with it."""
    def bad(problem: str, fix: str) -> HemascopeError:
        return HemascopeError(f"profile {path} {problem}", fix)

    try:
        raw = read_regular_file(path, MAX_PROFILE_BYTES)
    except FileNotFoundError:
        raise HemascopeError(f"profile not found: {path}",
                             "pass an existing file, e.g. firmware_config/profiles/"
                             "workstation-dev.toml") from None
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})",
                  "pass a readable profile file (check its permissions and links)") from None
    except ValueError as exc:
        raise bad(f"is unusable: {exc}",
                  f"pass a regular TOML file of at most {MAX_PROFILE_BYTES // 1024} KB") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark, as some editors write, is fine
    except UnicodeDecodeError as exc:
        raise bad(f"is not UTF-8 text (byte {exc.start})",
                  "save it as UTF-8 (TOML files are UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise bad(f"is not valid TOML: {exc}", "fix the syntax at that line") from None
    except RecursionError:
        raise bad("is nested too deeply", "profiles nest tables at most "
                  f"{MAX_PROFILE_DEPTH} deep; fix the file") from None
    except ValueError as exc:  # tomllib: an integer of more than 4300 digits
        raise bad(f"is not valid TOML: {exc}", "fix that value") from None
    if _depth(data) > MAX_PROFILE_DEPTH:
        raise bad("is nested too deeply", "profiles nest tables at most "
                  f"{MAX_PROFILE_DEPTH} deep; fix the file")
    return data


def _depth(value: object) -> int:
    """How deep tables and arrays are nested in a parsed TOML value (iterative: no recursion
    limit, whatever the file)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        deepest = max(deepest, level + 1)
        if level + 1 <= MAX_PROFILE_DEPTH:
            stack.extend((child, level + 1) for child in children)
    return deepest


def _resolve(path: Path, field: str, base: Path, value: Path) -> Path:
    """A path from the profile, absolute (relative ones from the profile's folder)."""
    try:
        value = value.expanduser()
        return value if value.is_absolute() else (base / value).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # ~nobody, a link loop, a NUL byte
        raise HemascopeError(f"profile {path}: field '{field}': unusable path {str(value)!r} "
                             f"({exc})", "write a plain file path there") from None
