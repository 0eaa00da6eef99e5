"""Synthetic masks land where the label says: over the nose, below it, or not a mask at all."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.align import CROP, TEMPLATE
from maskwatch.synth import HARD_CASES, KINDS, contact_sheet, draw_mask, draw_negative, hard_cases, synthesize


@pytest.fixture()
def faces() -> np.ndarray:
    """Flat mid-grey 'faces': every drawn pixel shows up as a change."""
    return np.full((3, CROP, CROP, 3), 128, np.uint8)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 12


EYE_Y = int(TEMPLATE[:2, 1].mean())
NOSE = TEMPLATE[2].astype(int)
MOUTH = TEMPLATE[3:].mean(0).astype(int)


@pytest.mark.parametrize("kind", KINDS["mask"])
def test_proper_mask_covers_nose_and_mouth_not_eyes(faces: np.ndarray, kind: str) -> None:
    for seed in range(5):
        out = draw_mask(faces[0], kind, np.random.default_rng(seed))
        diff = changed(faces[0], out)
        assert diff[NOSE[1], NOSE[0]] and diff[MOUTH[1], MOUTH[0]]
        assert not diff[: EYE_Y - 4].any()  # forehead and above untouched (loops start at the eyes)


def test_below_nose_leaves_the_nose_tip_bare(faces: np.ndarray) -> None:
    for seed in range(5):
        diff = changed(faces[0], draw_mask(faces[0], "below_nose", np.random.default_rng(seed)))
        assert not diff[NOSE[1] - 1, NOSE[0]]
        assert diff[MOUTH[1] + 2, MOUTH[0]]


def test_on_chin_leaves_the_mouth_bare(faces: np.ndarray) -> None:
    for seed in range(5):
        diff = changed(faces[0], draw_mask(faces[0], "on_chin", np.random.default_rng(seed)))
        assert not diff[MOUTH[1] - 1, MOUTH[0]]
        assert diff[CROP - 12 :, 20:44].any()


def test_beard_keeps_the_lips_visible(faces: np.ndarray) -> None:
    out = draw_negative(faces[0], "beard", np.random.default_rng(0))
    diff = changed(faces[0], out)
    assert diff[MOUTH[1] + 8, MOUTH[0]]  # chin covered
    assert not diff[MOUTH[1], MOUTH[0]]  # lips not


def test_synthesize_is_seeded_and_labels_follow_kinds(faces: np.ndarray) -> None:
    a, labels, kinds = synthesize(faces, 60, seed=3)
    b, labels_b, _ = synthesize(faces, 60, seed=3)
    assert a.shape == (60, CROP, CROP, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and labels == labels_b
    for label, kind in zip(labels, kinds, strict=True):
        assert kind in KINDS[label]
    assert set(labels) == {"mask", "no_mask", "incorrect"}


def test_hard_cases_per_case_counts(faces: np.ndarray) -> None:
    x, labels, cases = hard_cases(faces, 3, seed=1)
    assert len(x) == 3 * len(HARD_CASES)
    for case, label in zip(cases, labels, strict=True):
        assert HARD_CASES[case][0] == label


def test_dark_masks_are_dark(faces: np.ndarray) -> None:
    light = np.full((CROP, CROP, 3), 200, np.uint8)
    out = draw_mask(light, "surgical", np.random.default_rng(0), dark=True)
    assert out[MOUTH[1], MOUTH[0]].max() < 140


def test_contact_sheet_grid(faces: np.ndarray) -> None:
    x, labels, kinds = synthesize(faces, 13, seed=0)
    sheet = contact_sheet(x, kinds, columns=5, zoom=2)
    assert sheet.shape == (3 * (2 * CROP + 14), 5 * 2 * CROP, 3)
