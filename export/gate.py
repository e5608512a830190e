"""The accuracy gate every export passes through.

The artifact is measured through the `edge` runtime that will run it, on a validation split,
against its reference (the fp32 ONNX through onnxruntime) on the same images. The result is
written into the artifact's manifest; a failed gate marks it not releasable (the detector
refuses to run it) and the export command exits non-zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.capture.folder import IMAGE_SUFFIXES
from edge.core.errors import HemascopeError
from edge.inference.manifest import GateResult, load_verified, write_manifest
from export.calibration import content_digest

# measure(model, data, split, backend, delegate) -> metric value
Measure = Callable[[Path, Path, str, str, str], float]


@dataclass(frozen=True)
class Metric:
    """A task's gate metric (higher is better) and the largest drop allowed by default."""

    name: str
    max_drop: float
    measure: Measure


def detector_map50(model: Path, data: Path, split: str, backend: str, delegate: str) -> float:
    from training.evaluate import predict_split
    from training.metrics import detection_metrics

    preds, truths, classes, _ = predict_split(model, data, split, backend=backend,
                                           delegate=delegate)
    return detection_metrics(preds, truths, classes).map50


def classifier_accuracy(model: Path, data: Path, split: str, backend: str,
                        delegate: str) -> float:
    """Accuracy on the split of the class folders the model was trained on, through
    `edge.inference.classifier` (classifiers run on onnxruntime on every device)."""
    from edge.inference.classifier import Classifier
    from training.classify_data import load_pixels, read_class_folders

    classifier = Classifier(model)
    items = read_class_folders(data, 0.2, classifier.classes).split(split)
    probs = classifier.probabilities(list(load_pixels(items, classifier.size)))
    return float((probs.argmax(axis=1) == [it.label for it in items]).mean())


METRICS: dict[str, Metric] = {"detect": Metric("mAP50", 0.01, detector_map50),
                              "classify": Metric("accuracy", 0.005, classifier_accuracy)}


class GateFailed(Exception):
    """The artifact lost more accuracy than allowed; its manifest says so."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(
            f"accuracy gate failed: {result.metric} {result.value:.4f} vs reference "
            f"{result.reference_value:.4f} (drop {result.drop:.4f} > allowed {result.max_drop})")
        self.result = result


def validation_record(data: Path, split: str) -> dict[str, object]:
    if not (data / "images" / split).is_dir():  # class folders (a classifier)
        from training.classify_data import read_class_folders

        dataset = read_class_folders(data)
        return {"folder": str(data), "split": split, "images": len(dataset.split(split)),
                "digest": dataset.digest()}
    images = sorted(p for p in (data / "images" / split).iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES)
    labels = [p for i in images if (p := data / "labels" / split / f"{i.stem}.txt").is_file()]
    return {"folder": str(data), "split": split, "images": len(images),
            "digest": content_digest([*images, *labels])}


def run_gate(artifact: Path, reference: Path, data: Path, split: str = "val",
             accept_drop: float | None = None, delegate: str = "none") -> GateResult:
    """Measure `artifact` and `reference` on DATA/images/SPLIT, record the result in the
    artifact's manifest, and raise GateFailed when the drop exceeds the allowed one."""
    manifest = load_verified(artifact)
    ref = load_verified(reference)
    if (ref.runtime, ref.precision) != ("onnxruntime", "fp32"):
        raise HemascopeError(f"{reference.name} is {ref.precision} for {ref.runtime}, not the "
                             "fp32 ONNX reference", "pass the model `hemascope export onnx` wrote")
    metric = METRICS.get(manifest.task)
    if metric is None:
        raise HemascopeError(f"no accuracy gate for {manifest.task} models yet",
                             "add its metric to export.gate.METRICS")
    ref_value = metric.measure(reference, data, split, ref.runtime, "none")
    value = metric.measure(artifact, data, split, manifest.runtime, delegate)
    drop = ref_value - value
    max_drop = metric.max_drop if accept_drop is None else accept_drop
    result = GateResult(
        passed=drop <= max_drop, metric=metric.name, value=value, reference_value=ref_value,
        drop=drop, max_drop=max_drop, accepted_drop=accept_drop,
        reference={"file": reference.name, "sha256": ref.sha256, "runtime": ref.runtime},
        backend=manifest.runtime + (f"+{delegate}" if delegate != "none" else ""),
        data=validation_record(data, split),
    )
    manifest.gate = result
    write_manifest(artifact, manifest)
    if not result.passed:
        raise GateFailed(result)
    return result
