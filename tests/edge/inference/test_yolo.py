import cv2
import numpy as np
import pytest

from edge.inference.yolo import Letterbox, decode_yolo, letterbox_tensor, nms


def test_letterbox_tensor_keeps_aspect_centres_and_pads():
    image = np.full((480, 640, 3), 200, np.uint8)
    t, lb = letterbox_tensor(image, (416, 416))
    assert t.shape == (1, 3, 416, 416) and t.dtype == np.float32
    assert lb.scale == 416 / 640
    assert lb.pad_x == 0 and lb.pad_y == (416 - 312) // 2
    assert np.allclose(t[0, :, 0], 114 / 255) and np.allclose(t[0, :, 415], 114 / 255)
    assert np.allclose(t[0, :, 208], 200 / 255)


def test_letterbox_tensor_is_rgb_and_matches_a_plain_reference():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 200, 3), np.uint8)  # portrait: pads left and right
    t, lb = letterbox_tensor(image, (320, 320), pad_value=0)
    resized = cv2.resize(image, (213, 320), interpolation=cv2.INTER_LINEAR)
    reference = np.zeros((320, 320, 3), np.float32)
    reference[:, 53:266] = resized[..., ::-1] / 255.0
    assert (lb.pad_x, lb.pad_y) == (53.0, 0.0)
    np.testing.assert_allclose(t[0].transpose(1, 2, 0), reference, atol=1e-6)


def test_nms_matches_greedy_definition_on_random_boxes():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0.01, 1, 300).astype(np.float32)
    order, keep = list(np.argsort(-scores)), []
    while order:  # the textbook loop, for reference
        i = order.pop(0)
        keep.append(i)
        lt = np.maximum(boxes[i, :2], boxes[order, :2])
        rb = np.minimum(boxes[i, 2:], boxes[order, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        iou = inter / (area[i] + area[order] - inter)
        order = [o for o, v in zip(order, iou, strict=True) if v <= 0.45]
    assert nms(boxes, scores, 0.45).tolist() == keep


def test_nms_suppresses_overlaps_only():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms(boxes, scores, 0.99).tolist() == [0, 1, 2]


def _head(rows: list[tuple[float, float, float, float, int, float]], num_classes: int = 3):
    out = np.zeros((1, 4 + num_classes, len(rows)), np.float32)
    for a, (cx, cy, w, h, c, s) in enumerate(rows):
        out[0, :4, a] = (cx, cy, w, h)
        out[0, 4 + c, a] = s
    return out


def test_decode_maps_boxes_back_to_the_original_image():
    image = np.zeros((480, 640, 3), np.uint8)
    _, lb = letterbox_tensor(image, (416, 416))
    # A 64x64 px cell centred at (320, 240) in the original is 41.6 px at (208, 208) in input.
    s = lb.scale
    out = _head([(208, 208, 64 * s, 64 * s, 1, 0.9)])
    det = decode_yolo(out, lb, (480, 640), 0.25, 0.7)
    np.testing.assert_allclose(det.xyxy[0], [288, 208, 352, 272], atol=0.5)
    assert det.class_id.tolist() == [1]


def test_decode_filters_by_score_and_nms_is_per_class():
    lb = Letterbox(1.0, 0.0, 0.0)
    out = _head([
        (50, 50, 20, 20, 0, 0.9),
        (51, 51, 20, 20, 0, 0.8),  # same class, overlapping: suppressed
        (51, 51, 20, 20, 2, 0.6),  # other class at the same place: kept
        (200, 200, 20, 20, 1, 0.1),  # below threshold
    ])
    det = decode_yolo(out, lb, (416, 416), 0.25, 0.5)
    assert sorted(det.class_id.tolist()) == [0, 2]


def test_decode_clips_to_the_image():
    lb = Letterbox(1.0, 0.0, 0.0)
    det = decode_yolo(_head([(5, 5, 20, 20, 1, 0.9)]), lb, (100, 100), 0.25, 0.5)
    assert det.xyxy.min() >= 0


def test_letterbox_tensor_refuses_an_image_without_three_channels():
    for shape in ((48, 64), (48, 64, 1), (48, 64, 4)):
        with pytest.raises(ValueError, match="HxWx3"):
            letterbox_tensor(np.zeros(shape, np.uint8), (64, 64))


def test_letterbox_into_a_reused_array_overwrites_every_value():
    """A reused input array must hold only the new field: pads included, whatever the
    previous field's shape left there."""
    rng = np.random.default_rng(2)
    out = np.empty((1, 3, 320, 320), np.float32)
    letterbox_tensor(rng.integers(0, 256, (100, 320, 3), np.uint8), (320, 320), out=out)
    image = rng.integers(0, 256, (300, 200, 3), np.uint8)  # pads on other sides than before
    t, lb = letterbox_tensor(image, (320, 320), out=out)
    fresh, lb_fresh = letterbox_tensor(image, (320, 320))
    assert t is out and lb == lb_fresh
    np.testing.assert_array_equal(out, fresh)
    with pytest.raises(ValueError, match=r"\(1, 3, 320, 320\) float32"):
        letterbox_tensor(image, (320, 320), out=np.empty((1, 3, 320, 320), np.float64))
