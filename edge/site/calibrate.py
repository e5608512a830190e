"""Calibrate the white-cell differential to a site from its reviewed cells (numpy only).

The classifier's graph returns each crop's pooled embedding; calibration refits the linear
head on the embeddings of the reviewed crops (the exact inputs the model saw, read back from
the evidence) in their eight turned and mirrored views (a cell has no up or left: eight views
of 50 cells teach the head more than 50 crops), and on each crop's colour histograms
(`edge.inference.colour`: the site's own colours, which the graph's canonical stain hides),
scaled by their mean and spread over the reviewed crops, minimising their cross-entropy plus
an L2 pull towards the base head (whose colour weights start at zero). Classes
without a reviewed cell keep the base head's rows apart from that shared fit, so a site's
first 50 cells (which may hold no basophil) do not erase what the base model knew. The
model file is copied unchanged; the new head goes into its manifest with the provenance, and
the calibration into the audit log. The new manifest is unsigned: a device that requires
signatures needs it signed on the workstation (`hemascope sign`)."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import HemascopeError
from edge.core.files import utc_now, write_atomic, write_bytes_atomic
from edge.inference.classifier import Classifier
from edge.inference.colour import METHOD as COLOUR
from edge.inference.head import LinearHead, softmax
from edge.inference.manifest import manifest_path, verify_model
from edge.pipeline.explain import session_classifier
from edge.storage import audit
from edge.storage.store import Store

DEFAULT_PULL = 1.0  # weight of the L2 pull towards the base head (relative to one view)
VIEWS = 8  # each reviewed crop's dihedral views: 4 quarter turns, mirrored and not
FOLDS = 10  # cross-validation groups of reviewed cells
SCALE_FLOOR = 1e-3  # least spread a colour input is scaled by (a share of the crop's pixels)


def dihedral_views(crop: np.ndarray) -> list[np.ndarray]:
    """The crop turned by 0, 90, 180, 270 degrees, then the same mirrored (view 0 = as is)."""
    return [np.ascontiguousarray(np.rot90(image, k)) for image in (crop, crop[:, ::-1])
            for k in range(4)]


def view_embeddings(classifier: Classifier, crops: list[np.ndarray]) -> np.ndarray:
    """(N, VIEWS, D) embeddings of every crop's dihedral views."""
    x = classifier.embeddings([v for crop in crops for v in dihedral_views(crop)])
    return x.reshape(len(crops), VIEWS, -1)


def site_inputs(views: np.ndarray, colours: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, V, D + F) inputs of the site head from the crops' view embeddings (N, V, D) and
    colour histograms (N, F, the same in every view): the histograms scaled by their mean
    and spread over these crops, which are returned too."""
    mean, scale = colours.mean(axis=0), np.maximum(colours.std(axis=0), SCALE_FLOOR)
    scaled = np.repeat(((colours - mean) / scale)[:, None], views.shape[1], axis=1)
    return np.concatenate([views, scaled], axis=2), mean, scale


def start_head(head: LinearHead, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The base head as C x (D + F + 1) (bias last) for colour inputs scaled by (mean,
    scale): zero colour weights, or, for a base that was itself calibrated, its colour
    weights re-expressed in the new scaling (the same logits)."""
    w, b = (a.astype(np.float64) for a in head.arrays())
    old = head.feature_arrays()
    if old is None:
        return np.concatenate([w, np.zeros((len(w), len(mean))), b[:, None]], axis=1)
    d = head.embedding_dim
    per_share = w[:, d:] / old[1]  # the weight of one unit of each raw colour share
    bias = b + per_share @ (mean - old[0])
    return np.concatenate([w[:, :d], per_share * scale, bias[:, None]], axis=1)


def site_means(base_means: np.ndarray, embeddings: np.ndarray, labels: np.ndarray
               ) -> np.ndarray:
    """The stain check's reference for a calibrated model (C x D): each reviewed class's
    mean embedding at the site, the base model's training mean for the other classes. The
    site's later sessions are then measured against the site, not the training labs."""
    means = base_means.astype(np.float32)
    for c in np.unique(labels):
        means[c] = embeddings[labels == c].mean(axis=0)
    return means


def fit_head(x: np.ndarray, labels: np.ndarray, w0: np.ndarray,
             pull: float | np.ndarray = DEFAULT_PULL, steps: int = 300) -> np.ndarray:
    """Head (C x D+1, bias last) minimising mean cross-entropy on embeddings `x` (N x D)
    plus sum(pull * (W - W0)^2) / 2N, by Adam from W0; `pull` is one weight or one per input
    column (D+1, the bias last)."""
    n = len(x)
    xb = np.concatenate([x, np.ones((n, 1))], axis=1).astype(np.float64)
    onehot = np.eye(len(w0))[labels]
    w = w0.astype(np.float64).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    lr, b1, b2 = 0.01, 0.9, 0.999
    for t in range(1, steps + 1):
        grad = (softmax(xb @ w.T) - onehot).T @ xb / n + pull / n * (w - w0)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad ** 2
        w -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + 1e-8)
    return w


def logits(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Logits of head `w` (C x D+1, bias last) on embeddings `x` (N x D)."""
    return np.concatenate([x, np.ones((len(x), 1))], axis=1) @ w.T


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return logits(w, x).argmax(axis=1)


def fit_views(x: np.ndarray, labels: np.ndarray, w0: np.ndarray,
              pull: float | np.ndarray = DEFAULT_PULL) -> np.ndarray:
    """`fit_head` on every view of every cell: `x` is (N, V, D), one label per cell."""
    n, v, d = x.shape
    return fit_head(x.reshape(n * v, d), np.repeat(labels, v), w0, pull)


def cross_validated_accuracy(x: np.ndarray, labels: np.ndarray, w0: np.ndarray,
                             pull: float = DEFAULT_PULL, folds: int = FOLDS) -> float:
    """Accuracy on each reviewed cell (as is: view 0 of `x`, (N, V, D)) of a head fitted
    from the base head without any view of it: the cells are dealt into `folds` groups (one
    per cell when fewer), each group scored by a full fit on the others. Refits warm-started
    from the head that had seen the cell were optimistic (0.89 against 0.85 on held-out
    cells), so every fold starts from the base head."""
    fold = np.arange(len(labels)) % min(folds, len(labels))
    hits = 0
    for k in np.unique(fold):
        w = fit_views(x[fold != k], labels[fold != k], w0, pull)
        hits += int((predict(w, x[fold == k, 0]) == labels[fold == k]).sum())
    return hits / len(labels)


@dataclass(frozen=True)
class Calibration:
    model: Path
    cells: int
    per_class: dict[str, int]
    base_accuracy: float  # the base model on the reviewed cells (its agreement with review)
    cv_accuracy: float  # cross-validated accuracy of the calibrated head (FOLDS groups)
    seconds: float


def _reviewed_crops(store: Store, sessions: list[str], model: Path
                    ) -> tuple[Classifier, list[np.ndarray], list[str], list[str]]:
    """The session classifier, and every reviewed cell's stored crop (RGB) and label."""
    classifier: Classifier | None = None
    crops: list[np.ndarray] = []
    labels: list[str] = []
    ids: list[str] = []
    for session in sessions:
        row = store.session(session)
        reviews = store.reviews(row.id)
        if not reviews:
            raise HemascopeError(f"session {row.id[:12]} has no reviewed cells",
                                 f"import its review first: hemascope review import "
                                 f"{row.id[:8]} REVIEW.csv")
        used = session_classifier(row, "wbc", model)
        if classifier is not None and used.sha256 != classifier.sha256:
            raise HemascopeError("the sessions were classified by different models",
                                 "calibrate sessions of one differential model together")
        classifier = used
        paths = {(c.field_idx, c.cell): c.crop_path for c in store.classified_cells(row.id)}
        for r in reviews:
            if r.label not in used.classes:
                raise HemascopeError(f"session {row.id[:12]} field {r.field_idx} cell "
                                     f"{r.cell}: {r.label!r} is not a class of the model",
                                     f"review labels must be one of {', '.join(used.classes)}")
            rel = paths.get((r.field_idx, r.cell))
            image = cv2.imread(str(store.data_dir / rel)) if rel else None
            if image is None:
                raise HemascopeError(
                    f"session {row.id[:12]} field {r.field_idx} cell {r.cell}: its "
                    "stored crop is missing", "restore the session's evidence folder (a "
                    "session run with storage.evidence = false cannot be calibrated from)")
            crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            labels.append(r.label)
        ids.append(row.id)
    assert classifier is not None
    return classifier, crops, labels, ids


def calibrate_wbc(store: Store, sessions: list[str], model: Path, out: Path,
                  pull: float = DEFAULT_PULL, command: str = "") -> Calibration:
    """Fit the site head from the sessions' reviewed cells; write OUT (.onnx) + manifest."""
    started = time.perf_counter()
    if out.suffix != ".onnx":
        raise HemascopeError(f"--out {out} does not end in .onnx",
                             "name the calibrated model like the base one, e.g. site-wbc.onnx")
    if out.resolve() == model.resolve():
        raise HemascopeError(f"--out {out} is the base model itself",
                             "write the calibrated model to a new file")
    classifier, crops, labels, ids = _reviewed_crops(store, sessions, model)
    if classifier.head is None:
        raise HemascopeError(f"{model.name} carries no head in its manifest",
                             "calibrate a differential exported by hemascope 0.2 or later")
    x, mean, scale = site_inputs(view_embeddings(classifier, crops).astype(np.float64),
                                 classifier.colours(crops).astype(np.float64))
    y = np.array([classifier.classes.index(label) for label in labels])
    w0 = start_head(classifier.head, mean, scale)
    fitted = fit_views(x, y, w0, pull)
    base_accuracy = float((predict(w0, x[:, 0]) == y).mean())
    cv = cross_validated_accuracy(x, y, w0, pull)
    per_class = dict(sorted(Counter(labels).items()))
    base = classifier.manifest
    head = LinearHead.from_arrays(fitted[:, :-1], fitted[:, -1], (COLOUR, mean, scale))
    base_means = classifier.head.means()
    if base_means is not None:
        head = head.with_reference(site_means(base_means, x[:, 0, :base_means.shape[1]], y),
                                   classifier.head.reference_distance)
    manifest = base.model_copy(update={
        "file": out.name,
        "head": head,
        "calibration": {"base_file": base.file, "base_sha256": base.sha256,
                        "base_calibration": base.calibration or None,
                        "sessions": ids, "reviewed_cells": len(y), "per_class": per_class,
                        "uncorrected_classes": [c for c in classifier.classes
                                                if c not in per_class],
                        "base_accuracy_on_reviewed": round(base_accuracy, 4),
                        "cross_validated_accuracy": round(cv, 4), "folds": FOLDS,
                        "pull": pull, "views": VIEWS, "features": COLOUR,
                        "command": command, "created_at": utc_now()}})
    with model.open("rb") as src:
        write_atomic(out, lambda fh: shutil.copyfileobj(src, fh))
    write_bytes_atomic(manifest_path(out), (manifest.model_dump_json(indent=2) + "\n").encode())
    audit.record(store, "calibration", {
        "role": "wbc", "file": out.name, "digest": verify_model(out).digest,
        "base_file": base.file, "base_digest": classifier.digest, "sessions": ids,
        "reviewed_cells": len(y), "cross_validated_accuracy": round(cv, 4)})
    return Calibration(out, len(y), per_class, base_accuracy, cv,
                       time.perf_counter() - started)
