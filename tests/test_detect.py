import numpy as np

from edge.detect import Letterbox, decode_yolo, letterbox, nms, to_tensor


def test_letterbox_keeps_aspect_and_centres():
    image = np.full((480, 640, 3), 200, np.uint8)
    out, lb = letterbox(image, (416, 416))
    assert out.shape == (416, 416, 3)
    assert lb.scale == 416 / 640
    assert lb.pad_x == 0 and lb.pad_y == (416 - 312) // 2
    assert (out[0, :, 0] == 114).all() and (out[208, :, 0] == 200).all()


def test_to_tensor_is_rgb_nchw_unit_range():
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    t = to_tensor(image)
    assert t.shape == (1, 3, 4, 5) and t.dtype == np.float32
    assert t[0, 2].max() == 1.0 and t[0, 0].max() == 0.0


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
    _, lb = letterbox(image, (416, 416))
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
