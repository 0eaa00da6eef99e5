"""Draw faces on an image: boxes coloured by label, label and confidence.

Returns a new image and never writes files. Line width and text size follow
the image size so labels stay legible on a 400 px photo and on a 4K frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.types import Face

COLORS: dict[str | None, tuple[int, int, int]] = {
    "mask": (0, 200, 0),
    "no_mask": (230, 0, 0),
    "incorrect": (255, 140, 0),
    None: (160, 160, 160),
}
"""RGB colour per label; None is a face the classifier has not seen."""

FONT = cv2.FONT_HERSHEY_SIMPLEX


def style(width: int, height: int) -> tuple[int, float]:
    """(line thickness, font scale) for an image of this size."""
    long_side = max(width, height)
    return max(1, round(long_side / 500)), max(0.35, long_side / 1400)


def caption(face: Face) -> str:
    if face.label is None:
        return f"face {face.score:.2f}"
    return f"{face.label} {face.confidence or 0:.2f}"


def annotate(rgb: np.ndarray, faces: list[Face] | tuple[Face, ...]) -> np.ndarray:
    """A copy of `rgb` (H x W x 3, RGB) with every face drawn on it."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    thick, font_scale = style(w, h)
    text_thick = max(1, thick - 1) if font_scale > 0.6 else 1
    for face in sorted(faces, key=lambda f: f.size, reverse=True):  # small faces' labels stay on top
        color = COLORS[face.label]
        x1, y1, x2, y2 = (round(v) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        text = caption(face)
        (tw, th), base = cv2.getTextSize(text, FONT, font_scale, text_thick)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y2 + th + base + 2)
        tx = min(max(0, x1), max(0, w - tw - 2))
        cv2.rectangle(out, (tx, ty - th - base), (tx + tw + 2, ty + 1), color, -1)
        ink = (0, 0, 0) if face.label in ("mask", "incorrect", None) else (255, 255, 255)
        cv2.putText(out, text, (tx + 1, ty - base + 1), FONT, font_scale, ink, text_thick, cv2.LINE_AA)
    return out


VERDICT_COLORS = {"allow": (0, 170, 0), "deny": (210, 0, 0), "no_face": (90, 90, 90)}
"""RGB banner colour per gate verdict."""


def banner(rgb: np.ndarray, title: str, message: str, verdict: str) -> np.ndarray:
    """`rgb` with a band the size of a kiosk sign added below it (the face
    stays in view): `title` (ALLOW / DENY / NO FACE) large, `message` (the
    reason) under it."""
    w = rgb.shape[1]
    band = max(60, rgb.shape[0] // 4)
    out = np.vstack([rgb, np.empty((band, w, 3), np.uint8)])
    h = out.shape[0]
    cv2.rectangle(out, (0, h - band), (w, h), VERDICT_COLORS[verdict], -1)
    big = band / 60
    (tw, th), _ = cv2.getTextSize(title, FONT, big, max(2, round(big * 2)))
    cv2.putText(out, title, ((w - tw) // 2, h - band + th + band // 10), FONT, big, (255, 255, 255),
                max(2, round(big * 2)), cv2.LINE_AA)
    small = big / 3
    (mw, mh), _ = cv2.getTextSize(message, FONT, small, 1)
    cv2.putText(out, message, (max(0, (w - mw) // 2), h - band // 8), FONT, small, (255, 255, 255),
                max(1, round(small * 2)), cv2.LINE_AA)
    return out
