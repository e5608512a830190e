"""Coral Edge TPU: a full-integer LiteRT model for `edgetpu_compiler`, and the manifest of the
compiled `*_edgetpu.tflite` the compiler writes.

The compiler only runs on a Linux host (x86-64, or the Pi itself) from Coral's apt repository,
which these machines cannot reach: `hemascope export edgetpu` stops at the int8 model (gated
on the CPU through LiteRT) and prints the compile command (docs/devices/raspberry-pi.md).
"""

from __future__ import annotations

from pathlib import Path

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.manifest import (
    ModelManifest,
    load_verified,
    manifest_path,
    write_manifest,
)


def compiled_name(model: Path) -> Path:
    """detector-edgetpu.tflite -> detector-edgetpu_edgetpu.tflite (the compiler's naming)."""
    return model.with_name(f"{model.stem}_edgetpu.tflite")


def compile_command(model: Path) -> str:
    return f"edgetpu_compiler -s -o {model.parent} {model}"


def adopt_compiled(compiled: Path) -> ModelManifest:
    """Write the manifest of a compiled `X_edgetpu.tflite` from the manifest of `X.tflite`.

    The compiler maps the same int8 arithmetic onto the TPU, so the source's gate is carried
    over as measured (its `backend` says where); `hemascope export gate ... --delegate edgetpu`
    on a Pi with the Coral re-measures it on the TPU itself.
    """
    source = compiled.with_name(compiled.name.removesuffix("_edgetpu.tflite") + ".tflite")
    if not compiled.name.endswith("_edgetpu.tflite") or not manifest_path(source).is_file():
        raise HemascopeError(f"{compiled.name}: no {manifest_path(source).name} beside it",
                             "keep the `hemascope export edgetpu` model and its .json next to "
                             "the compiled *_edgetpu.tflite")
    src = load_verified(source)
    if src.export.get("io") != "int8":
        raise HemascopeError(f"{source.name} is not a full-integer model",
                             "compile the model written by `hemascope export edgetpu`")
    manifest = src.model_copy(update={
        "file": compiled.name, "sha256": file_sha256(compiled), "precision": "int8-edgetpu",
        "export": {**src.export, "target": "edgetpu-compiled",
                   "compiled_from": {"file": source.name, "sha256": src.sha256}},
    })
    write_manifest(compiled, manifest)
    return manifest
