"""`hemascope export TARGET ...` and `hemascope bench`: workstation commands.

Every target except the fp32 ONNX reference goes through the accuracy gate (export/gate.py):
the command exits 1 and the manifest says `gate.passed: false` when the artifact loses more
than the allowed accuracy against the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

export_app = typer.Typer(help="Export a trained checkpoint for a device runtime.",
                         no_args_is_help=True)

Checkpoint = Annotated[Path, typer.Argument(help="Trained checkpoint (.pt).", exists=True,
                                            dir_okay=False)]
Reference = Annotated[Path, typer.Argument(
    help="The fp32 ONNX reference (from `hemascope export onnx`), with its manifest.",
    exists=True, dir_okay=False)]
ReferenceOpt = Annotated[Path, typer.Option(
    "--reference", help="The fp32 ONNX of the same checkpoint: the gate's reference.",
    exists=True, dir_okay=False)]
Data = Annotated[Path, typer.Option(
    help="Validation data: a YOLO dataset (images/SPLIT, labels/SPLIT), e.g. runs/detector/data; "
    "for a classifier, the class-folder dataset it was trained on (its val split).",
    exists=True, file_okay=False)]
Calib = Annotated[Path, typer.Option(
    "--calib", help="Calibration images: a folder, or a YOLO dataset (its train split is used), "
    "or for a classifier its class-folder dataset (its train split is used).",
    exists=True, file_okay=False)]
CalibImages = Annotated[int, typer.Option(
    help="Calibration images used (evenly spaced by name; >= 300 recommended).")]
Split = Annotated[str, typer.Option(help="Split of --data the gate measures on.")]
Out = Annotated[Path, typer.Option(help="Output file; its manifest .json goes beside it.")]
AcceptDrop = Annotated[float | None, typer.Option(
    help="Accept a metric drop up to this (recorded in the manifest) instead of the default "
    "0.01 mAP50.")]
Sign = Annotated[Path | None, typer.Option(
    "--sign", metavar="KEY", help="Sign the model and its manifest with this private key (PEM, "
    "from `hemascope keys generate`) once the export and its gate pass: writes NAME.sig beside "
    "them, for devices whose profile sets signatures.required.", exists=True, dir_okay=False)]


def _signer(key_path: Path | None) -> Callable[[Path], None]:
    """What signs the finished artifact with --sign KEY (nothing without it); the key is read
    before any work, so a wrong key fails at once."""
    if key_path is None:
        return lambda _: None
    from edge.inference.manifest import verify_model
    from edge.inference.signing import load_private_key, sign_digest, signature_path

    key = load_private_key(key_path)

    def sign(model: Path) -> None:
        signature = sign_digest(model, verify_model(model).digest, key)
        typer.echo(f"signed {model.name} and its manifest with key {signature.public_key}: "
                   f"{signature_path(model)}")
    return sign


def _gate(artifact: Path, reference: Path, data: Path, split: str,
          accept_drop: float | None, delegate: str = "none") -> None:
    """Run the accuracy gate; exit 1 (artifact marked not releasable) when it fails."""
    from export.gate import GateFailed, run_gate

    try:
        r = run_gate(artifact, reference, data, split, accept_drop, delegate)
    except GateFailed as exc:
        typer.echo(f"{artifact.name}: {exc}; recorded in its manifest: NOT releasable", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"gate passed: {r.metric} {r.value:.4f} through {r.backend} vs reference "
               f"{r.reference_value:.4f} (drop {r.drop:+.4f}, allowed {r.max_drop})")


def _exported(out: Path, sha256: str) -> None:
    typer.echo(f"exported {out} ({out.stat().st_size / 2**20:.1f} MB) sha256 {sha256}")


def _calibration(folder: Path, reference: Path, images: int):
    from edge.inference.manifest import load_verified
    from export.calibration import calibration_images

    m = load_verified(reference)
    size = (m.input.height, m.input.width)
    if m.task == "classify":  # class folders: calibrate on the training split only
        from training.classify_data import Source, read_class_folders

        # the folder as the model was trained on it: a test share it held out stays out
        trained = [Source.from_record(r) for r in m.training.get("config", {}).get("sources", [])]
        source = next((s for s in trained if s.path.resolve() == folder.resolve()), Source(folder))
        train = [it.path for it in read_class_folders(source).split("train")]
        return calibration_images(folder, size, images, "area", train, m.input.stain)
    return calibration_images(folder, size, images)


@export_app.command("onnx")
def export_onnx_command(
    checkpoint: Checkpoint,
    out: Out = Path("detector.onnx"),
    imgsz: Annotated[int | None, typer.Option(
        help="Input size (default: the training size from the run manifest).")] = None,
    opset: Annotated[int, typer.Option(
        help="ONNX opset (13 for TensorRT 8.2 on JetPack 4.6).")] = 18,
    sign: Sign = None,
) -> None:
    """Export to ONNX fp32 for onnxruntime (every device): the reference every other target
    is gated against. A checkpoint from `hemascope train classify` becomes a classifier
    (task "classify"; --imgsz is then the training size).

    Example:
      hemascope export onnx runs/detector/train/weights/best.pt \\
        --out edge/models/detector.onnx
    """
    from training.cli import require_train_extra

    require_train_extra()
    signer = _signer(sign)
    from export.classify_onnx import export_classifier_onnx, read_classifier_checkpoint
    from export.onnx import export_onnx

    if read_classifier_checkpoint(checkpoint) is not None:  # from `hemascope train classify`
        manifest = export_classifier_onnx(checkpoint, out, opset)
        _exported(out, manifest.sha256)
        signer(out)
        from training.classify_data import Source

        data = " ".join(f"--data {Source.from_record(r).spec()}"
                        for r in manifest.training.get("config", {}).get("sources", []))
        typer.echo(f"next: hemascope eval {out} {data or '--data DATA_DIR'}")
        return
    manifest = export_onnx(checkpoint, out, imgsz, opset)
    _exported(out, manifest.sha256)
    signer(out)
    typer.echo(f"next: hemascope eval {out} --data runs/detector/data --set-threshold")


@export_app.command("onnx-fp16")
def onnx_fp16_command(reference: Reference, data: Data,
                      out: Out = Path("detector-fp16.onnx"),
                      split: Split = "val", accept_drop: AcceptDrop = None,
                      sign: Sign = None) -> None:
    """ONNX fp16 (float32 I/O), for GPUs (Jetson onnxruntime CUDA / TensorRT providers).

    Example: hemascope export onnx-fp16 edge/models/detector.onnx --data runs/detector/data
    """
    from export.onnx_fp16 import export_onnx_fp16

    signer = _signer(sign)
    _exported(out, export_onnx_fp16(reference, out).sha256)
    _gate(out, reference, data, split, accept_drop)
    signer(out)


@export_app.command("onnx-int8")
def onnx_int8_command(reference: Reference, calib: Calib, data: Data,
                      out: Out = Path("detector-int8.onnx"),
                      calib_images: CalibImages = 300, split: Split = "val",
                      accept_drop: AcceptDrop = None, sign: Sign = None) -> None:
    """ONNX int8 (onnxruntime static QDQ, per-channel) for CPUs (Pi, Jetson CPU, x86).

    Example: hemascope export onnx-int8 edge/models/detector.onnx \\
      --calib runs/detector/data --data runs/detector/data --out models/detector-int8.onnx
    """
    from export.onnx_int8 import export_onnx_int8

    signer = _signer(sign)
    manifest = export_onnx_int8(reference, out, _calibration(calib, reference, calib_images))
    _exported(out, manifest.sha256)
    _gate(out, reference, data, split, accept_drop)
    signer(out)


@export_app.command("litert")
def litert_command(checkpoint: Checkpoint, reference: ReferenceOpt, data: Data,
                   out: Out = Path("detector-litert.tflite"),
                   split: Split = "val", accept_drop: AcceptDrop = None,
                   sign: Sign = None) -> None:
    """LiteRT fp32 (.tflite) for ai-edge-litert on a Pi (backend.type = "litert").

    Example: hemascope export litert training/checkpoints/detector-416-v1.pt \\
      --reference edge/models/detector.onnx --data runs/detector/data
    """
    from export.litert import export_litert

    signer = _signer(sign)
    _exported(out, export_litert(checkpoint, reference, out).sha256)
    _gate(out, reference, data, split, accept_drop)
    signer(out)


@export_app.command("litert-int8")
def litert_int8_command(checkpoint: Checkpoint, reference: ReferenceOpt, calib: Calib,
                        data: Data, out: Out = Path("detector-litert-int8.tflite"),
                        calib_images: CalibImages = 300, split: Split = "val",
                        accept_drop: AcceptDrop = None, sign: Sign = None) -> None:
    """LiteRT int8 (int8 weights and activations, float32 I/O), calibrated on real frames."""
    from export.litert import export_litert

    signer = _signer(sign)
    cal = _calibration(calib, reference, calib_images)
    _exported(out, export_litert(checkpoint, reference, out, cal).sha256)
    _gate(out, reference, data, split, accept_drop)
    signer(out)


@export_app.command("edgetpu")
def edgetpu_command(checkpoint: Checkpoint, reference: ReferenceOpt, calib: Calib, data: Data,
                    out: Out = Path("detector-edgetpu.tflite"),
                    calib_images: CalibImages = 300, split: Split = "val",
                    accept_drop: AcceptDrop = None) -> None:
    """Full-integer LiteRT model (int8 I/O) for the Coral Edge TPU compiler, gated on the CPU.

    Then, on a Linux host with edgetpu_compiler: the printed command, and
    `hemascope export edgetpu-compiled X_edgetpu.tflite` for its manifest.
    """
    from export.edgetpu import compile_command
    from export.litert import export_litert

    cal = _calibration(calib, reference, calib_images)
    _exported(out, export_litert(checkpoint, reference, out, cal, integer_io=True).sha256)
    _gate(out, reference, data, split, accept_drop)
    typer.echo(f"next (on a host with the Edge TPU compiler): {compile_command(out)}")


@export_app.command("edgetpu-compiled")
def edgetpu_compiled_command(compiled: Annotated[Path, typer.Argument(
        help="The *_edgetpu.tflite written by edgetpu_compiler.", exists=True,
        dir_okay=False)], sign: Sign = None) -> None:
    """Write the manifest of a compiled Edge TPU model (from its source model's manifest)."""
    from export.edgetpu import adopt_compiled

    signer = _signer(sign)
    manifest = adopt_compiled(compiled)
    signer(compiled)
    typer.echo(f"{compiled.name}: manifest written, sha256 {manifest.sha256}; profile: "
               "backend.type = \"litert\", backend.delegate = \"edgetpu\"")


@export_app.command("tensorrt")
def tensorrt_command(reference: Reference, data: Data,
                     out: Out = Path("detector-trt.engine"),
                     precision: Annotated[str, typer.Option(help="fp16 or int8.")] = "fp16",
                     calib: Annotated[Path | None, typer.Option(
                         "--calib", help="Calibration images (int8).", exists=True,
                         file_okay=False)] = None,
                     calib_images: CalibImages = 300, split: Split = "val",
                     accept_drop: AcceptDrop = None, sign: Sign = None) -> None:
    """TensorRT engine, built ON the Jetson (JetPack's TensorRT; docs/devices/jetson-nano.md).

    Example: hemascope export tensorrt detector.onnx --precision int8 --calib calib/ \\
      --data val-data/ --out detector-int8.engine
    """
    from export.tensorrt import build_engine

    if precision not in ("fp16", "int8"):
        raise typer.BadParameter("fp16 or int8", param_hint="--precision")
    signer = _signer(sign)
    cal = _calibration(calib, reference, calib_images) if calib else None
    _exported(out, build_engine(reference, out, precision, cal).sha256)
    _gate(out, reference, data, split, accept_drop)
    signer(out)


@export_app.command("gate")
def gate_command(artifact: Annotated[Path, typer.Argument(
                     help="Exported model with its manifest.", exists=True, dir_okay=False)],
                 reference: ReferenceOpt, data: Data, split: Split = "val",
                 delegate: Annotated[str, typer.Option(
                     help="LiteRT delegate: none or edgetpu.")] = "none",
                 accept_drop: AcceptDrop = None, sign: Sign = None) -> None:
    """(Re-)measure an artifact against its reference and record the gate, e.g. a compiled
    Edge TPU model on a Pi with the Coral attached (--delegate edgetpu)."""
    signer = _signer(sign)
    _gate(artifact, reference, data, split, accept_drop, delegate)
    signer(artifact)


def bench_command(
    models: Annotated[list[Path], typer.Argument(
        help="Models with manifests; the first (the fp32 ONNX) is the speed-up reference.",
        exists=True, dir_okay=False)],
    data: Data,
    split: Split = "val",
    frames: Annotated[int, typer.Option(help="Frames timed per model.")] = 50,
    threads: Annotated[int, typer.Option(help="Runtime threads (0: all cores).")] = 0,
    skip_map: Annotated[bool, typer.Option(help="Do not measure mAP50 (faster).")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the table here.")] = None,
) -> None:
    """Latency p50/p90, fields/s end to end, peak RSS and mAP50 of every model on the same
    frames, each through its own runtime (models whose runtime is not installed are skipped).

    Example: hemascope bench edge/models/detector.onnx models/detector-int8.onnx \\
      models/detector-litert.tflite --data runs/detector/data --json bench.json
    """
    from rich.console import Console
    from rich.table import Table

    from edge.inference.manifest import load_verified
    from export.bench import bench, installed, write_json

    usable = [m for m in models if installed(load_verified(m).runtime)]
    for m in sorted(set(models) - set(usable)):
        typer.echo(f"skipped {m.name}: its runtime {load_verified(m).runtime} is not installed",
                   err=True)
    rows = bench(usable, data, split, frames, threads, not skip_map)
    table = Table(title=f"{frames} frames of {data.name}/{split}, threads {threads or 'all'}")
    for col in ("model", "runtime", "precision", "MB", "p50 ms", "p90 ms", "fields/s",
                "speed-up", "peak RSS MB", "mAP50"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r.model, r.runtime, r.precision, f"{r.size_mb:.1f}", f"{r.infer_p50_ms:.1f}",
                      f"{r.infer_p90_ms:.1f}", f"{r.fields_per_s:.1f}", f"{r.speedup:.2f}x",
                      f"{r.peak_rss_mb:.0f}", "-" if r.map50 is None else f"{r.map50:.3f}")
    Console().print(table)
    if json_out:
        write_json(rows, json_out, {"data": str(data), "split": split, "frames": frames,
                                    "threads": threads})
