"""The manifest of an artifact derived from the fp32 ONNX reference (int8, fp16, LiteRT, ...)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.manifest import (
    ModelManifest,
    Runtime,
    load_verified,
    manifest_path,
    write_manifest,
)
from training.provenance import command_line


def derive_manifest(reference: Path, out: Path, precision: str, runtime: Runtime,
                    export: dict[str, Any]) -> ModelManifest:
    """Write `out`'s manifest: what the reference's says (classes, input, thresholds, training),
    plus this artifact's digest, precision, runtime and how it was made. Not gated yet."""
    taken = manifest_path(out)
    if taken.is_file() and json.loads(taken.read_text()).get("file") != out.name:
        raise HemascopeError(f"{out.name} would overwrite {taken.name}, the manifest of another "
                             "model", "give the output another name (--out)")
    ref = load_verified(reference)
    manifest = ref.model_copy(update={
        "file": out.name, "sha256": file_sha256(out), "precision": precision,
        "runtime": runtime, "gate": None, "metrics": {},
        "export": {"command": command_line(), "reference": reference.name,
                   "reference_sha256": ref.sha256, **export},
    })
    write_manifest(out, manifest)
    return manifest
