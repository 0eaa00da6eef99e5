"""Landmarks -> a canonical face crop that keeps nose, mouth and chin in view.

The mask sits on the lower face, so the template (ArcFace's 5 points, shrunk
to 75 % and lifted) leaves room below the mouth for the chin and a hanging
mask. When the 5 points disagree with the box (tiny or turned faces give
poor landmarks) the crop falls back to the box, so one bad landmark cannot
throw the crop off the face.
"""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.types import Face

CROP = 64

_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
TEMPLATE = ((_ARCFACE_112 - 56.0) * 0.75 + [56.0, 50.0]) * (CROP / 112.0)
"""Where eyes, nose tip and mouth corners land in a CROP x CROP crop."""

_BOX_FACE_SIDE = 0.80
"""Share of the crop a fallback box crop spans (about what aligned crops show)."""


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares rotation + uniform scale + shift taking src to dst (2x3).

    Umeyama's closed form over all points: no outlier rejection, so the fit
    is deterministic for a given 5 points (OpenCV's estimator samples).
    None when the source points all coincide.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    if float((s**2).sum()) < 1e-9:
        return None
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign)) / float((s**2).sum() / len(src))
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def box_transform(box: tuple[float, float, float, float]) -> np.ndarray:
    """Square crop around the box centre: used when landmarks cannot be trusted."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1, 1.0) / _BOX_FACE_SIDE
    scale = CROP / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[scale, 0, CROP / 2 - scale * cx], [0, scale, CROP / 2 - scale * cy]])


def landmarks_plausible(m: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """The fitted transform should be roughly upright and sized like the box."""
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    angle = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    box_scale = box_transform(box)[0, 0]
    return bool(abs(angle) < 50 and 0.6 < scale / box_scale < 1.7)


def face_transform(face: Face) -> np.ndarray:
    if face.landmarks:
        m = similarity(np.asarray(face.landmarks, dtype=np.float64), TEMPLATE)
        if m is not None and landmarks_plausible(m, face.box):
            return m
    return box_transform(face.box)


def align(rgb: np.ndarray, face: Face) -> np.ndarray:
    """The CROP x CROP x 3 crop of one face in an image (same grid as face)."""
    m = face_transform(face)
    shrink = int(min(4, 1 / max(float(np.hypot(m[0, 0], m[1, 0])), 1e-6)))
    if shrink >= 2:  # big face: warp at a larger size, then area-average down (no aliasing)
        big = cv2.warpAffine(rgb, m * shrink, (CROP * shrink, CROP * shrink), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(big, (CROP, CROP), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(rgb, m, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_all(rgb: np.ndarray, faces: list[Face] | tuple[Face, ...]) -> np.ndarray:
    """N x CROP x CROP x 3 uint8 crops, one per face, in order."""
    if not faces:
        return np.zeros((0, CROP, CROP, 3), dtype=np.uint8)
    return np.stack([align(rgb, f) for f in faces])
