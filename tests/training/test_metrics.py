import numpy as np
import pytest

from edge.core.detections import Detections
from training.metrics import (
    average_precision,
    box_iou,
    choose_threshold,
    count_errors,
    detection_metrics,
    match_image,
)

CLASSES = ["WBC", "RBC", "Platelets"]


def det(boxes, classes, scores=None):
    return Detections.from_arrays(boxes, classes, scores)


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0], rtol=1e-6)


def test_perfect_predictions_score_one():
    truth = [det([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1])]
    m = detection_metrics(truth, truth, CLASSES)
    assert m.map50 == pytest.approx(1.0) and m.map50_95 == pytest.approx(1.0)
    assert set(m.ap50) == {"WBC", "RBC"}  # a class absent from the truth is not averaged


def test_a_high_scoring_false_positive_lowers_ap():
    truth = [det([[0, 0, 10, 10]], [0])]
    good = [det([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [0.9, 0.1])]
    bad = [det([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [0.1, 0.9])]
    assert detection_metrics(good, truth, CLASSES).map50 == pytest.approx(1.0)
    assert detection_metrics(bad, truth, CLASSES).map50 == pytest.approx(0.5, abs=0.01)


def test_each_truth_box_is_matched_once():
    truth = det([[0, 0, 10, 10]], [0])
    pred = det([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])
    _, tp = match_image(pred, truth, 0)
    assert tp[:, 0].tolist() == [True, False]


def test_loose_boxes_count_at_iou50_but_not_at_iou95():
    truth = [det([[0, 0, 10, 10]], [0])]
    pred = [det([[0, 0, 10, 13]], [0], [0.9])]  # IoU 0.77
    m = detection_metrics(pred, truth, CLASSES)
    assert m.map50 == pytest.approx(1.0) and m.map50_95 < 0.7


def test_ap_no_predictions_is_zero():
    assert average_precision(np.zeros(0), np.zeros((0, 10), bool), 3).tolist() == [0.0] * 10


def test_count_errors_and_threshold_choice():
    truths = [det([[0, 0, 10, 10]], [0]), det([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])]
    preds = [det([[0, 0, 10, 10], [40, 40, 50, 50]], [0, 0], [0.9, 0.2]),
             det([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0.8, 0.7])]
    loose = count_errors(preds, truths, CLASSES, 0.1)
    assert loose["WBC"]["mae_per_image"] == 0.5 and loose["WBC"]["total_relative_error"] == 1.0
    strict = count_errors(preds, truths, CLASSES, 0.5)
    assert strict["WBC"]["exact_share"] == 1.0 and strict["RBC"]["mae_per_image"] == 0.0
    t = choose_threshold(preds, truths, CLASSES)
    assert 0.2 < t <= 0.7
