"""Detection and counting metrics, computed with numpy on predictions from `edge`.

mAP follows the COCO recipe: greedy matching by score at each IoU threshold, 101-point
interpolated precision, averaged over IoU 0.50:0.95 (mAP50-95) or taken at 0.50 (mAP50).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.core.detections import Detections

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N, 4) x (M, 4) -> (N, M)."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_image(pred: Detections, truth: Detections, class_id: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Scores and true-positive flags (P, T) of one class's predictions in one image."""
    p = pred[pred.class_id == class_id]
    g = truth.xyxy[truth.class_id == class_id]
    order = np.argsort(-p.confidence, kind="stable")
    scores = p.confidence[order]
    tp = np.zeros((len(order), len(IOU_THRESHOLDS)), dtype=bool)
    if len(g) and len(order):
        ious = box_iou(p.xyxy[order], g)
        for t, thr in enumerate(IOU_THRESHOLDS):
            taken = np.zeros(len(g), dtype=bool)
            for i in range(len(order)):
                cand = np.where(~taken & (ious[i] >= thr), ious[i], -1.0)
                j = int(cand.argmax())
                if cand[j] >= 0:
                    taken[j] = True
                    tp[i, t] = True
    return scores, tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_truth: int) -> np.ndarray:
    """AP at every IoU threshold from pooled scores and TP flags (101-point interpolation)."""
    if n_truth == 0:
        return np.full(tp.shape[1], np.nan)
    if len(scores) == 0:
        return np.zeros(tp.shape[1])
    order = np.argsort(-scores, kind="stable")
    tp = tp[order]
    ctp = np.cumsum(tp, axis=0)
    cfp = np.cumsum(~tp, axis=0)
    recall = ctp / n_truth
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    grid = np.linspace(0, 1, 101)
    ap = np.zeros(tp.shape[1])
    for t in range(tp.shape[1]):
        envelope = np.maximum.accumulate(precision[::-1, t])[::-1]
        idx = np.searchsorted(recall[:, t], grid, side="left")
        ap[t] = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)],
                         0.0).mean()
    return ap


@dataclass
class DetectionMetrics:
    map50: float
    map50_95: float
    ap50: dict[str, float]
    ap50_95: dict[str, float]


def detection_metrics(preds: list[Detections], truths: list[Detections],
                      classes: list[str]) -> DetectionMetrics:
    ap50: dict[str, float] = {}
    ap: dict[str, float] = {}
    for cid, name in enumerate(classes):
        parts = [match_image(p, g, cid) for p, g in zip(preds, truths, strict=True)]
        scores = np.concatenate([s for s, _ in parts])
        tp = np.concatenate([t for _, t in parts])
        n_truth = int(sum((g.class_id == cid).sum() for g in truths))
        per_iou = average_precision(scores, tp, n_truth)
        if not np.isnan(per_iou).all():
            ap50[name] = float(per_iou[0])
            ap[name] = float(per_iou.mean())
    return DetectionMetrics(float(np.mean(list(ap50.values()))), float(np.mean(list(ap.values()))),
                            ap50, ap)


def count_errors(preds: list[Detections], truths: list[Detections], classes: list[str],
                 threshold: float) -> dict[str, dict[str, float]]:
    """Per class, at a score threshold: per-image MAE, exact-count share, total relative error."""
    out: dict[str, dict[str, float]] = {}
    for cid, name in enumerate(classes):
        pc = np.array([int(((p.class_id == cid) & (p.confidence >= threshold)).sum())
                       for p in preds])
        gc = np.array([int((g.class_id == cid).sum()) for g in truths])
        out[name] = {
            "mae_per_image": float(np.abs(pc - gc).mean()),
            "exact_share": float((pc == gc).mean()),
            "total_relative_error": float((pc.sum() - gc.sum()) / max(gc.sum(), 1)),
            "mean_true_per_image": float(gc.mean()),
        }
    return out


def choose_threshold(preds: list[Detections], truths: list[Detections], classes: list[str],
                     grid: np.ndarray | None = None) -> float:
    """Score threshold minimising the summed per-image count MAE, each class scaled by its
    mean true count (so RBCs, ~20 a field, do not drown out WBCs and platelets, ~1)."""
    grid = np.round(np.arange(0.05, 0.91, 0.01), 2) if grid is None else grid

    def cost(t: float) -> float:
        errs = count_errors(preds, truths, classes, t)
        return sum(e["mae_per_image"] / max(e["mean_true_per_image"], 1.0) for e in errs.values())

    return float(min(grid, key=cost))
