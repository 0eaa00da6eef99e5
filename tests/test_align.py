"""maskwatch.align: the similarity fit, the template, the box fallback and crops of real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.align import (
    CROP,
    TEMPLATE,
    align,
    align_all,
    box_transform,
    face_transform,
    landmarks_plausible,
    similarity,
)
from maskwatch.types import Face

TEMPLATE_POINTS = tuple((float(x), float(y)) for x, y in TEMPLATE)


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize(
    ("angle_deg", "scale", "shift"),
    [(30.0, 1.7, (5.0, -3.0)), (-12.0, 0.25, (100.0, 40.0)), (0.0, 1.0, (0.0, 0.0)), (170.0, 3.0, (-7.5, 2.5))],
)
def test_similarity_recovers_a_known_transform_exactly(
    angle_deg: float, scale: float, shift: tuple[float, float]
) -> None:
    a = np.radians(angle_deg)
    expected = np.array(
        [
            [scale * np.cos(a), -scale * np.sin(a), shift[0]],
            [scale * np.sin(a), scale * np.cos(a), shift[1]],
        ]
    )
    src = np.array([[10.0, 20.0], [40.0, 18.0], [25.0, 35.0], [14.0, 50.0], [37.0, 52.0]])
    dst = apply(expected, src)
    np.testing.assert_allclose(similarity(src, dst), expected, atol=1e-9)


def test_similarity_by_hand() -> None:
    # Unit square corners doubled and shifted by (3, 4): scale 2, no rotation.
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(similarity(src, src * 2 + [3, 4]), [[2, 0, 3], [0, 2, 4]], atol=1e-12)
    # A 90-degree turn (x, y) -> (-y, x): rows (0, -1) and (1, 0), no shift.
    np.testing.assert_allclose(similarity(src, src[:, ::-1] * [-1, 1]), [[0, -1, 0], [1, 0, 0]], atol=1e-12)


def test_similarity_never_mirrors() -> None:
    # Mirrored points (x -> -x) cannot be matched by a rotation; the fit must stay a rotation
    # (positive determinant) rather than flip the face, which a plain SVD solution would do.
    src = np.array([[10.0, 20.0], [40.0, 18.0], [25.0, 35.0], [14.0, 50.0], [37.0, 52.0]])
    m = similarity(src, src * [-1, 1])
    assert np.linalg.det(m[:, :2]) > 0
    np.testing.assert_allclose(m[0, 1], -m[1, 0], atol=1e-12)  # rotation + scale: [[a, -b], [b, a]]
    np.testing.assert_allclose(m[0, 0], m[1, 1], atol=1e-12)


def test_template_maps_onto_itself() -> None:
    np.testing.assert_allclose(similarity(TEMPLATE, TEMPLATE), [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    assert TEMPLATE.shape == (5, 2)
    # Inside the crop, eyes above nose above mouth, left points left of right ones.
    assert (TEMPLATE > 0).all() and (TEMPLATE < CROP).all()
    assert TEMPLATE[0, 1] < TEMPLATE[2, 1] < TEMPLATE[3, 1]
    assert TEMPLATE[0, 0] < TEMPLATE[1, 0] and TEMPLATE[3, 0] < TEMPLATE[4, 0]
    # ArcFace left eye (38.2946, 51.6963): ((38.2946 - 56) * .75 + 56) * 64/112 = 24.412,
    # ((51.6963 - 56) * .75 + 50) * 64/112 = 26.727.
    np.testing.assert_allclose(TEMPLATE[0], [24.412, 26.727], atol=1e-3)


def test_face_on_the_template_aligns_to_the_identity() -> None:
    # Box side 44: box scale 64 / (44 / .8) = 1.164; fitted scale 1 -> ratio .86, inside (.6, 1.7).
    face = Face((16.0, 16.0, 56.0, 60.0), 0.9, TEMPLATE_POINTS)
    m = face_transform(face)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    image = np.random.default_rng(1).integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align(image, face), image)  # the crop is the image itself


def test_box_transform_by_hand() -> None:
    # Box (10, 20, 50, 100): side max(40, 80) / .8 = 100, scale 64/100 = .64, centre (30, 60);
    # shift 32 - .64 * 30 = 12.8 and 32 - .64 * 60 = -6.4. The centre lands on the crop centre.
    m = box_transform((10.0, 20.0, 50.0, 100.0))
    np.testing.assert_allclose(m, [[0.64, 0, 12.8], [0, 0.64, -6.4]])
    np.testing.assert_allclose(apply(m, np.array([[30.0, 60.0]])), [[32, 32]])


@pytest.mark.parametrize(
    ("landmarks", "plausible"),
    [
        (TEMPLATE_POINTS, True),
        # Upside down (turned 180 degrees about the crop centre): angle 180 > 50.
        (tuple((CROP - x, CROP - y) for x, y in TEMPLATE_POINTS), False),
        # Points squeezed to a tenth: fitted scale 10, 8.6 times the box scale (> 1.7).
        (tuple((32 + (x - 32) / 10, 32 + (y - 32) / 10) for x, y in TEMPLATE_POINTS), False),
        # Spread 4 times: scale .25, ratio .21 (< .6).
        (tuple((32 + (x - 32) * 4, 32 + (y - 32) * 4) for x, y in TEMPLATE_POINTS), False),
    ],
    ids=["template", "upside-down", "squeezed", "spread"],
)
def test_implausible_landmarks_fall_back_to_the_box(landmarks: tuple, plausible: bool) -> None:
    box = (16.0, 16.0, 56.0, 60.0)
    face = Face(box, 0.9, landmarks)
    fit = similarity(np.array(landmarks), TEMPLATE)
    assert landmarks_plausible(fit, box) == plausible  # a numpy bool, so == rather than "is"
    expected = fit if plausible else box_transform(box)
    np.testing.assert_allclose(face_transform(face), expected)


def test_face_without_landmarks_uses_the_box() -> None:
    box = (10.0, 20.0, 50.0, 100.0)
    np.testing.assert_array_equal(face_transform(Face(box, 0.9)), box_transform(box))


def test_landmarks_all_at_one_point_fall_back_to_the_box() -> None:
    box = (10.0, 10.0, 50.0, 50.0)
    face = Face(box, 0.9, ((30.0, 30.0),) * 5)
    np.testing.assert_allclose(face_transform(face), box_transform(box))
    assert align(np.zeros((64, 64, 3), np.uint8), face).shape == (CROP, CROP, 3)


def test_align_returns_a_64x64_rgb_crop_of_each_real_face(examples, detect_example) -> None:
    pixels, faces = detect_example(examples[0])
    crops = align_all(pixels, faces)
    assert crops.shape == (len(faces), CROP, CROP, 3) and crops.dtype == np.uint8
    for face, crop in zip(faces, crops, strict=True):
        np.testing.assert_array_equal(crop, align(pixels, face))  # same crop alone or in a batch
        m = face_transform(face)
        # Least squares over 5 points: each landmark lands within a few pixels of its template point.
        assert np.abs(apply(m, np.array(face.landmarks)) - TEMPLATE).max() < 8
        assert crop.std() > 10  # a face, not a flat border fill


def test_big_face_crop_matches_the_small_one(examples, detect_example) -> None:
    """The same photo enlarged x4 (faces of 300-450 px) gives nearly the same crops (area-averaged path)."""
    pixels, faces = detect_example(examples[0])
    h, w = pixels.shape[:2]
    big = cv2.resize(pixels, (w * 4, h * 4), interpolation=cv2.INTER_CUBIC)
    small_crops = align_all(pixels, faces).astype(int)
    for face, small in zip(faces, small_crops, strict=True):
        if face.size < 64:
            continue
        big_face = Face(tuple(4 * v for v in face.box), face.score, tuple((4 * x, 4 * y) for x, y in face.landmarks))
        assert big_face.size >= 256
        m_small, m_big = face_transform(face), face_transform(big_face)
        # Coordinates x4 -> the same fit with the linear part / 4 and the same shift.
        np.testing.assert_allclose(m_big[:, :2] * 4, m_small[:, :2], atol=1e-9)
        np.testing.assert_allclose(m_big[:, 2], m_small[:, 2], atol=1e-6)
        crop = align(big, big_face)
        assert crop.shape == (CROP, CROP, 3) and crop.dtype == np.uint8
        assert np.abs(crop.astype(int) - small).mean() < 8  # different faces differ by 40+ on average


def test_align_all_of_no_faces() -> None:
    crops = align_all(np.zeros((10, 10, 3), np.uint8), [])
    assert crops.shape == (0, CROP, CROP, 3) and crops.dtype == np.uint8
    assert align_all(np.zeros((10, 10, 3), np.uint8), ()).shape == (0, CROP, CROP, 3)
