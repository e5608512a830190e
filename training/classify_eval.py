"""Evaluate an exported classifier through `edge.classifier`, on the split of the class-folder
datasets that training used, or on a laboratory it never saw (split "all"), as is and under
stain changes:

(a) as is; (b) gray-world normalised; (c) hue +-10 degrees x saturation +-30 % (the four
corners; the worst one is the headline figure); (d) seen by a 3x coarser camera.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.errors import HemascopeError
from edge.core.labels import NOT_WHITE_CELLS
from edge.inference.classifier import Classifier, gray_world
from edge.inference.manifest import ModelManifest, manifest_path
from edge.inference.stain import estimate
from edge.pipeline.second_stage import white_cell_class
from training.augment import coarsen, shift_hue_saturation
from training.classify_data import Source, load_pixels, read_class_folders
from training.classify_metrics import classification_report

HSV_SHIFTS = [(h, s) for h in (-10.0, 10.0) for s in (0.7, 1.3)]
COARSEN_FACTOR = 3.0


def conditions() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Name -> transform of an RGB uint8 image, for every measured colour condition."""
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {"as_is": lambda im: im,
                                                          "gray_world": gray_world}
    for h, s in HSV_SHIFTS:
        out[f"hue{h:+.0f}_sat{s:.1f}"] = lambda im, h=h, s=s: shift_hue_saturation(im, h, s)
    out["coarse"] = lambda im: coarsen(im, COARSEN_FACTOR)
    return out


def evaluate_classifier(model: Path, data: list[Source], split: str = "val",
                        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Metrics of `model` on the `split` ("train", "val", "test" or "all") of DATA's labs,
    re-derived exactly as training split them (a lab's test share is in its Source). A lab
    may hold only some of the model's classes (every prediction still chooses among all of
    them); on a lab it never saw ("all"), the lab's classes the model does not have are left
    out and listed.

    On the val split of the data it was trained on (same data digest), the result is recorded
    in the model's manifest under metrics.val."""
    classifier = Classifier(model)
    trained_on = classifier.manifest.training.get("data", {})
    dataset = read_class_folders(data, float(trained_on.get("val_fraction", 0.2)),
                                 classifier.classes, skip_unknown=split == "all")
    items = dataset.split(split)
    if not items:
        raise HemascopeError(
            f"no images in split {split!r} of {', '.join(s.name for s in data)}",
            "give the lab as it was trained, with its test share (DATA:test=SHARE)"
            if split == "test" else "use --split train, val, test or all")
    pixels = load_pixels(items, classifier.size, data)
    truth = np.array([it.label for it in items])
    result: dict[str, Any] = {"model": model.name, "sha256": classifier.sha256,
                              "data": [s.describe() for s in data],
                              "split": split, "data_digest": dataset.digest(),
                              "classes_left_out": dataset.skipped_classes,
                              "same_data_as_training":
                                  dataset.digest() == trained_on.get("data_digest")}
    transforms = conditions()
    timings: list[float] = []
    for step, (name, transform) in enumerate(transforms.items()):
        probs = np.empty((len(items), len(classifier.classes)), np.float32)
        for i, image in enumerate(pixels):
            t0 = time.perf_counter()
            probs[i] = classifier.probabilities([transform(image)])[0]
            if name == "as_is":
                timings.append((time.perf_counter() - t0) * 1e3)
        result[name] = classification_report(probs, truth, classifier.classes)
        if name == "as_is" and any(c in NOT_WHITE_CELLS for c in classifier.classes):
            # as the runner labels a detected white-cell box: never a platelet
            said = [white_cell_class(classifier.classes, p) for p in probs]
            result["white_cell_box_accuracy"] = float(np.mean(np.array(said) == truth))
        if progress:
            progress(step + 1, len(transforms))
    hsv = [result[n]["accuracy"] for n in transforms if n.startswith("hue")]
    result["robustness"] = {"a_as_is": result["as_is"]["accuracy"],
                            "b_gray_world": result["gray_world"]["accuracy"],
                            "c_hue_sat_worst": min(hsv), "c_hue_sat_mean": float(np.mean(hsv)),
                            "d_coarse": result["coarse"]["accuracy"]}
    result["latency_ms_p50"] = float(np.median(timings))
    if split == "val" and result["same_data_as_training"]:
        mpath = manifest_path(model)
        manifest = ModelManifest.model_validate(json.loads(mpath.read_text()))
        manifest.metrics = {"val": result}
        mpath.write_text(manifest.model_dump_json(indent=2) + "\n")
    return result


REFERENCE_PER_CLASS = 100  # crops per class and lab for the class means
REFERENCE_SESSIONS = 20  # random 100-cell sessions per lab for the reference distance


def write_reference(model: Path, data: list[Source], split: str = "train",
                  seed: int = 0) -> dict[str, Any]:
    """Write the stain-check reference into the model's manifest head: each class's
    mean embedding (up to REFERENCE_PER_CLASS crops per class in each lab of `split`,
    averaged over the labs that have the class) and the largest stain distance the
    labs' own random 100-cell sessions reach (`edge.inference.stain`)."""
    classifier = Classifier(model)
    if classifier.head is None:
        raise HemascopeError(f"{model.name} carries no head in its manifest",
                             "re-export it with `hemascope export onnx`")
    trained_on = classifier.manifest.training.get("data", {})
    rng = np.random.default_rng(seed)
    per_lab: list[tuple[np.ndarray, np.ndarray]] = []
    for source in data:
        dataset = read_class_folders([source], float(trained_on.get("val_fraction", 0.2)),
                                     classifier.classes, skip_unknown=True)
        items = dataset.split(split)
        picked = [it for c in range(len(classifier.classes))
                  for it in rng.permutation([i for i in items if i.label == c]).tolist()
                  [:REFERENCE_PER_CLASS]]
        if picked:
            per_lab.append((classifier.embeddings(list(load_pixels(picked, classifier.size,
                                                                     [source]))),
                            np.array([it.label for it in picked])))
    sums = np.zeros((len(classifier.classes), classifier.head.dim))
    labs = np.zeros(len(classifier.classes))
    for emb, y in per_lab:
        for c in np.unique(y):
            sums[c] += emb[y == c].mean(axis=0)
            labs[c] += 1
    if not labs.all():
        missing = [classifier.classes[c] for c in np.flatnonzero(labs == 0)]
        raise HemascopeError(f"no {split} images of {', '.join(missing)} in the data given",
                             "give every lab the model was trained on, with --split train")
    means = (sums / labs[:, None]).astype(np.float32)
    w, b = classifier.head.arrays()
    distances = [estimate(emb[idx], means, w, b).distance
                 for emb, _ in per_lab if len(emb) >= 100
                 for idx in (rng.permutation(len(emb))[:100] for _ in range(REFERENCE_SESSIONS))]
    reference = max(distances) if distances else None  # no lab has 100 crops: unknown
    manifest = classifier.manifest.model_copy(
        update={"head": classifier.head.with_reference(means, reference)})
    manifest_path(model).write_text(manifest.model_dump_json(indent=2) + "\n")
    return {"model": model.name, "split": split, "data": [s.describe() for s in data],
            "labs": len(per_lab), "crops": int(sum(len(y) for _, y in per_lab)),
            "reference_distance": None if reference is None else round(reference, 4),
            "session_distances": [round(d, 4) for d in sorted(distances)]}
