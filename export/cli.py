"""`hemascope export TARGET ...`: workstation command (needs the `train` or `export` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

export_app = typer.Typer(help="Export a trained checkpoint for a device runtime.",
                         no_args_is_help=True)


@export_app.command("onnx")
def export_onnx_command(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint (.pt).", exists=True,
                                               dir_okay=False)],
    out: Annotated[Path, typer.Option(help="Output .onnx; its manifest .json goes beside it.")] = (
        Path("detector.onnx")),
    imgsz: Annotated[int | None, typer.Option(
        help="Input size (default: the training size from the run manifest).")] = None,
) -> None:
    """Export to ONNX fp32 for onnxruntime (every device).

    Example:
      hemascope export onnx runs/detector/train/weights/best.pt \\
        --out edge/models/detector.onnx
    """
    from training.cli import require_train_extra

    require_train_extra()
    from export.onnx import export_onnx

    manifest = export_onnx(checkpoint, out, imgsz)
    typer.echo(f"exported {out} ({out.stat().st_size / 2**20:.1f} MB) sha256 {manifest.sha256}")
    typer.echo(f"next: hemascope eval {out} --data runs/detector/data --set-threshold")
