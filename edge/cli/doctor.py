"""`hemascope doctor`: is this device ready to count? Each check says what it found and the fix."""

from __future__ import annotations

import ctypes.util
import importlib.util
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge.capture.sources import parse_spec
from edge.config import Profile, load_profile
from edge.core.errors import HemascopeError
from edge.core.labels import DETECTOR_CLASSES
from edge.storage import layout
from edge.storage.space import reserve_missing_mb
from edge.storage.store import inspect_database, recorded_digests

OK, WARN, FAIL = "ok", "warn", "fail"
EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)  # a Pi without RTC boots in 1970


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def check_profile(path: Path | None) -> tuple[Check, Profile | None]:
    try:
        profile = load_profile(path)
    except HemascopeError as exc:
        return Check("profile", FAIL, exc.problem, exc.fix), None
    return Check("profile", OK, f"{path or 'built-in workstation-dev'} is valid"), profile


_SIGN_FIX = ("restore the signed model and manifest, or sign them again on the workstation "
             "(hemascope sign MODEL --key KEY)")


def _signature(model: Path, digest: str, signer: str | None) -> tuple[str, bool]:
    """How a model is signed, as doctor says it, and whether that is a problem: a signature
    made for another digest (model or manifest changed since) is one even when signatures
    are not required (only `signatures.required` checks the signature itself)."""
    from edge.inference.signing import read_signature

    if signer is not None:
        return f"signed by trusted key {signer[:12]}… (verified)", False
    try:
        signature = read_signature(model)
    except HemascopeError as exc:
        return exc.problem, True
    if signature is None:
        return "unsigned", False
    if signature.digest != digest:
        return (f"{model.name} or its manifest changed since it was signed (digest signed "
                f"{signature.digest[:12]}, now {digest[:12]})", True)
    return (f"signed by key {signature.public_key[:12]}… (signature not checked: "
            "signatures.required is off)", False)


def check_model(profile: Profile) -> Check:
    from edge.inference.detector import Detector

    try:
        detector = Detector.from_config(profile.model, profile.backend, profile.thresholds,
                                        profile.signatures, threads=1)
    except HemascopeError as exc:
        return Check("model", FAIL, exc.problem, exc.fix)
    m = detector.manifest
    signed, problem = _signature(detector.model_path, detector.digest, detector.signer)
    return Check("model", WARN if problem else OK,
                 f"{profile.model.detector.name} sha256 {m.sha256[:12]} matches its manifest; "
                 f"digest {detector.digest[:12]} (model + manifest); "
                 f"{m.input.width}x{m.input.height}, classes {', '.join(m.classes)}; {signed}",
                 _SIGN_FIX if problem else "")


def check_classifiers(profile: Profile) -> Check:
    from edge.pipeline.second_stage import FieldClassifiers

    try:
        enabled = FieldClassifiers(profile.classifiers, list(DETECTOR_CLASSES),
                                   profile.signatures.trusted()).models()
    except HemascopeError as exc:
        return Check("classifiers", FAIL, exc.problem, exc.fix)
    if not enabled:
        return Check("classifiers", OK, "off (classifiers.wbc and classifiers.all_subtype)")
    paths = {"wbc": profile.classifiers.wbc_model, "all_subtype": profile.classifiers.all_model}
    found, problems = [], False
    for m in enabled:
        signer = m.get("signed_by")
        signed, problem = _signature(paths[str(m["role"])], str(m["digest"]),
                                     str(signer) if signer else None)
        problems |= problem
        found.append(f"{m['role']}: {m['file']} sha256 {str(m['sha256'])[:12]} matches its "
                     f"manifest, digest {str(m['digest'])[:12]}, {signed}")
    return Check("classifiers", WARN if problems else OK, "; ".join(found),
                 _SIGN_FIX if problems else "")


def check_manifests(profile: Profile) -> Check:
    """Whether a model's manifest changed since a session recorded its digest: same model
    file (sha256), another digest means the manifest was edited (classes, thresholds...)."""
    from edge.inference.manifest import verify_model

    recorded = recorded_digests(profile.storage.data_dir)
    models = [("detector", profile.model.detector)]
    models += [(role, path) for role, path, on in (
        ("wbc", profile.classifiers.wbc_model, profile.classifiers.wbc),
        ("all_subtype", profile.classifiers.all_model, profile.classifiers.all_subtype)) if on]
    changed, compared = [], 0
    for role, path in models:
        try:
            verified = verify_model(path)
        except HemascopeError:
            continue  # the model and classifiers checks say why
        seen = recorded.get((role, verified.manifest.sha256))
        if seen is None:
            continue
        compared += 1
        if seen[1] != verified.digest:
            changed.append(f"the manifest of {path.name} changed since session {seen[0][:12]} "
                           f"(digest recorded {seen[1][:12]}, now {verified.digest[:12]})")
    if changed:
        return Check("manifests", WARN, "; ".join(changed),
                     "if nobody changed it on purpose (hemascope eval --set-threshold, a new "
                     "release), restore the manifest that came with the model; with "
                     "signatures.required an edited manifest is refused")
    if not compared:
        return Check("manifests", OK, "no session recorded these models yet")
    return Check("manifests", OK, f"{compared} model manifests as recorded by the last session "
                 "that used them")


def check_backend(profile: Profile) -> Check:
    import onnxruntime

    providers = ", ".join(p.removesuffix("ExecutionProvider")
                          for p in onnxruntime.get_available_providers())
    return Check("backend", OK, f"{profile.backend.type} {onnxruntime.__version__} ({providers})")


def check_edgetpu() -> Check:
    """Informational: an Edge TPU runtime and a LiteRT interpreter, for Coral profiles."""
    lib = ctypes.util.find_library("edgetpu")
    litert = any(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tflite_runtime"))
    if lib and litert:
        return Check("edge tpu", OK, f"libedgetpu ({lib}) and a LiteRT interpreter found")
    return Check("edge tpu", OK, "no Edge TPU runtime (not needed by this profile's backend)")


def check_camera(profile: Profile) -> Check:
    spec = profile.source.default
    try:
        scheme, arg = parse_spec(spec)
    except HemascopeError as exc:
        return Check("camera", FAIL, f"source.default: {exc.problem}", exc.fix)
    if scheme not in ("camera", "picamera"):
        return Check("camera", OK, f"no camera used: the profile's source is {spec!r}")
    if scheme == "picamera":
        if importlib.util.find_spec("picamera2") is None:
            return Check("camera", FAIL, "picamera2 is not installed",
                         "sudo apt install python3-picamera2 (Raspberry Pi OS)")
        return Check("camera", OK, "picamera2 installed (capture tested by `hemascope run`)")
    from edge.capture.camera import open_opencv

    cap = open_opencv(int(arg or 0))
    try:
        ok = cap.isOpened() and cap.read()[0]
    finally:
        cap.release()
    if not ok:
        return Check("camera", FAIL, f"camera {arg} not found or gives no frames",
                     "connect the microscope camera and check `ls /dev/video*`")
    return Check("camera", OK, f"camera {arg} delivers frames")


def check_disk(profile: Profile) -> Check:
    data_dir = profile.storage.data_dir
    probe = data_dir if data_dir.exists() else next(p for p in data_dir.parents if p.exists())
    free_mb = shutil.disk_usage(probe).free / 2**20
    storage = profile.storage  # what a run needs to start (edge.storage.space)
    need = (reserve_missing_mb(data_dir, storage.reserve_mb)
            + max(storage.min_free_mb, storage.reserve_mb))
    if free_mb < need:
        return Check("disk", FAIL, f"{free_mb:.1f} MB free in {probe}, {need:.1f} MB needed to "
                     "start a run (storage.min_free_mb; storage.reserve_mb kept in reserve and "
                     "free beside it)", "free space, or sync and archive old sessions")
    return Check("disk", OK, f"{free_mb:.0f} MB free in {probe} (a run needs {need:.0f} MB)")


def check_database(profile: Profile) -> Check:
    db = profile.storage.data_dir / layout.DATABASE
    try:
        health = inspect_database(profile.storage.data_dir)
    except sqlite3.DatabaseError as exc:
        return Check("database", FAIL, f"{db}: {exc}",
                     "copy the data dir aside and restore the database from the last sync")
    if health is None:
        return Check("database", OK, f"no database yet ({db} is created by the first run)")
    if health.integrity != "ok":
        return Check("database", FAIL, f"integrity check: {health.integrity}",
                     "copy the data dir aside and restore the database from the last sync")
    return Check("database", OK, f"{db} passes the integrity check ({health.sessions} sessions)")


def check_recovery(profile: Profile) -> Check:
    """Close the sessions a stopped process left running (`edge.pipeline.recovery`) and say so."""
    from edge.pipeline.recovery import recover_sessions
    from edge.storage.store import Store

    if not (profile.storage.data_dir / layout.DATABASE).exists():
        return Check("recovery", OK, "no database yet")
    try:
        store = Store.open(profile.storage.data_dir)
        try:
            recovery = recover_sessions(store)
        finally:
            store.close()
    except (HemascopeError, sqlite3.Error) as exc:
        return Check("recovery", FAIL, f"sessions left running not checked: {exc}",
                     "see the database check")
    if not recovery.sessions:
        return Check("recovery", OK, "no session left running by a stopped process")
    return Check("recovery", WARN,
                 f"closed {len(recovery.sessions)} sessions left running by a stopped process "
                 f"({', '.join(s[:12] for s in recovery.sessions)}) as interrupted, queued for "
                 f"sync; {recovery.orphan_files} orphan files removed",
                 "none: their stored fields are kept; see why the runs stopped (power, kill)")


def check_audit(profile: Profile) -> Check:
    """The audit log's chain and head (`edge.storage.audit.verify`)."""
    from edge.storage.audit import verify

    try:
        result = verify(profile.storage.data_dir)
    except (OSError, sqlite3.Error) as exc:
        return Check("audit", FAIL, f"audit log not checked: {exc}", "see the database check")
    if result.problems:
        more = f" (and {len(result.problems) - 1} more)" if len(result.problems) > 1 else ""
        return Check("audit", FAIL, f"audit log: {result.problems[0]}{more}",
                     "see `hemascope audit verify`; keep the data dir as it is for whoever "
                     "investigates")
    if result.last is None:
        return Check("audit", OK, "no audit events yet")
    return Check("audit", OK, f"{result.events} events, chain intact up to event "
                 f"{result.last.seq} ({result.last.kind} at {result.last.at[:19]})")


def check_clock(profile: Profile, now: datetime | None = None) -> Check:
    now = now or datetime.now(UTC)
    if now < EARLIEST_PLAUSIBLE:
        return Check("clock", FAIL, f"system time is {now:%Y-%m-%d}",
                     "set the date (`sudo date -s ...`) or fit an RTC; timestamps would be wrong")
    try:
        health = inspect_database(profile.storage.data_dir, integrity=False)
    except sqlite3.DatabaseError:
        health = None
    newest = health.newest_start if health is not None else None
    if newest and datetime.fromisoformat(newest) > now:
        return Check("clock", FAIL, f"system time {now:%Y-%m-%d %H:%M} is before the newest "
                     f"session ({newest[:16]})", "set the correct date and time")
    return Check("clock", OK, f"{now:%Y-%m-%d %H:%M} UTC")


def check_site_calibration(profile: Profile) -> Check:
    """Whether the white-cell differential was calibrated to this site's reviewed cells."""
    from edge.inference.classifier import Classifier

    if not profile.classifiers.wbc:
        return Check("site calibration", OK, "no differential (classifiers.wbc is off)")
    try:
        model = Classifier(profile.classifiers.wbc_model)
    except HemascopeError as exc:
        return Check("site calibration", FAIL, exc.problem, exc.fix)
    cal = model.manifest.calibration
    if not cal:
        return Check("site calibration", WARN,
                     f"{model.manifest.file} is not calibrated for this site",
                     "review about 50 white cells of a first smear (hemascope review import), "
                     "then hemascope calibrate wbc SESSION --out site-wbc.onnx")
    return Check("site calibration", OK,
                 f"{model.manifest.file}: calibrated on {cal['reviewed_cells']} reviewed cells "
                 f"of {len(cal['sessions'])} sessions ({cal['created_at'][:10]}), cross-validated "
                 f"agreement {cal['cross_validated_accuracy']:.2f}")


def run_checks(profile_path: Path | None) -> list[Check]:
    first, profile = check_profile(profile_path)
    if profile is None:
        return [first]
    checks: list[Callable[[Profile], Check]] = [
        check_model, check_classifiers, check_manifests, check_site_calibration, check_backend,
        lambda _: check_edgetpu(), check_camera, check_disk, check_database, check_recovery,
        check_audit, check_clock]
    return [first, *(check(profile) for check in checks)]
