"""ONNX (fp32) export of a `hemascope train classify` checkpoint, with its manifest.

The graph takes 1x3xSxS RGB in [0, 1] (INTER_AREA-resized, as `edge.inference.classifier`
prepares it) and returns class probabilities and the pooled embedding (which site
calibration fits a new head on)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.dyes import METHOD as DYES
from edge.inference.head import LinearHead
from edge.inference.manifest import ModelInput, ModelManifest, write_manifest
from export.onnx import training_manifest
from training.classify_model import ARCHITECTURES, Exported, build_model
from training.classify_train import CHECKPOINT_FORMAT
from training.provenance import command_line


def read_classifier_checkpoint(checkpoint: Path) -> dict[str, Any] | None:
    """The checkpoint's content if `hemascope train classify` wrote it, else None (e.g. an
    Ultralytics detector checkpoint, which is not loadable with weights_only=True)."""
    try:
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    except Exception:  # pickle of arbitrary classes: not ours
        return None
    return state if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT else None


def _stain(state: dict[str, Any], checkpoint: Path) -> str:
    """The input stain the checkpoint was trained on, if the device still runs it."""
    stain = state.get("stain", "as-is")
    if stain not in ("as-is", DYES):
        raise HemascopeError(f"{checkpoint} was trained on crops normalised as {stain!r}, which "
                             f"the device no longer runs (it runs {DYES!r})",
                             "train the model again with --dye-normalise")
    return stain


def _head(graph: Exported) -> LinearHead:
    """The final linear layer, written into the manifest for site calibration's prior."""
    linear = [m for m in graph.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return LinearHead.from_arrays(linear.weight.detach().numpy(), linear.bias.detach().numpy())


def export_classifier_onnx(checkpoint: Path, out: Path, opset: int = 18) -> ModelManifest:
    """Export a classifier checkpoint to `out` (.onnx) and write its manifest beside it."""
    state = read_classifier_checkpoint(checkpoint)
    if state is None:
        raise ValueError(f"{checkpoint} is not a `hemascope train classify` checkpoint")
    stain = _stain(state, checkpoint)
    size = int(state["imgsz"])
    arch = state.get("arch", "smallnet")
    model = build_model(arch, len(state["classes"]), size)
    model.load_state_dict(state["model"])
    graph = Exported(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is kept:
        # the dynamo one needs onnxscript, which the train extra does not install
        torch.onnx.export(graph, (torch.zeros(1, 3, size, size),), str(out), dynamo=False,
                          opset_version=opset, input_names=["images"],
                          output_names=["probabilities", "embedding"])
    manifest = ModelManifest(
        task="classify",
        classes=list(state["classes"]),
        input=ModelInput(height=size, width=size, resize="area", stain=stain),
        file=out.name,
        sha256=file_sha256(out),
        precision="fp32",
        head=_head(graph),
        training=training_manifest(checkpoint),
        export={"command": command_line(), "source_checkpoint": checkpoint.name,
                "source_sha256": file_sha256(checkpoint), "source_epoch": int(state["epoch"]),
                "architecture": ARCHITECTURES[arch],
                "opset": opset, "seconds": round(time.time() - started, 1)},
    )
    write_manifest(out, manifest)
    return manifest
