"""Synthetic masks on aligned unmasked faces (`maskwatch synth`).

The real data has few `incorrect` faces (80 in train) and few hard
negatives, so masks are drawn procedurally on aligned `no_mask` crops: the
face's landmarks sit at `align.TEMPLATE`, so nose, mouth and chin are where
the template says (give or take the jitter drawn here). Shapes are drawn at
4x and area-averaged down, shaded across the face, and mixed with the face's
own light so they follow it. Every output carries the label it was drawn for:

- `mask`: surgical (pleats), cloth (plain or printed), FFP2/KN95 (seam)
  covering nose to chin, in many colours, dark ones included;
- `incorrect`: the same masks below the nose, on the chin, or hanging;
- `no_mask`: hard negatives: a hand over the mouth, a scarf or collar, a
  beard, a phone or paper in front of the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskwatch.align import CROP, TEMPLATE

UP = 4
"""Drawing resolution relative to the crop."""

KINDS = {
    "mask": ("surgical", "cloth", "ffp2"),
    "incorrect": ("below_nose", "on_chin", "hanging"),
    "no_mask": ("hand", "scarf", "beard", "phone", "paper"),
}

PALETTE = np.array([
    (170, 205, 230), (120, 170, 215), (245, 245, 245), (225, 225, 220), (30, 30, 32), (55, 55, 60),
    (90, 90, 95), (20, 30, 70), (235, 170, 190), (120, 190, 160), (60, 100, 60), (150, 40, 50),
    (200, 180, 140), (95, 60, 40), (250, 220, 90), (70, 40, 110),
], dtype=np.float32)


@dataclass(frozen=True)
class Geometry:
    """Face points in crop pixels, jittered per sample."""

    cx: float
    eye_y: float
    nose_y: float
    mouth_y: float
    chin_y: float
    half_w: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Geometry:
        eyes, nose, mouth = TEMPLATE[:2].mean(0), TEMPLATE[2], TEMPLATE[3:].mean(0)
        j = lambda s: rng.normal(0, s)  # noqa: E731
        eye_mouth = mouth[1] - eyes[1]
        return cls(
            cx=float(nose[0] + j(1.0)),
            eye_y=float(eyes[1] + j(0.8)),
            nose_y=float(nose[1] + j(0.8)),
            mouth_y=float(mouth[1] + j(0.8)),
            chin_y=float(mouth[1] + eye_mouth * rng.uniform(0.55, 0.75)),
            half_w=float((TEMPLATE[1, 0] - TEMPLATE[0, 0]) * rng.uniform(0.95, 1.2)),
        )


def _poly(points: list[tuple[float, float]]) -> np.ndarray:
    return (np.array(points) * UP).astype(np.int32)


def mask_shape(g: Geometry, top: float, style: str, rng: np.random.Generator) -> np.ndarray:
    """Alpha (UP*CROP square, 0..1) of a mask whose upper edge is at `top`."""
    alpha = np.zeros((CROP * UP, CROP * UP), np.float32)
    bottom = g.chin_y + rng.uniform(0, 3)
    w_top, w_mid, w_bot = g.half_w * rng.uniform(0.8, 0.95), g.half_w, g.half_w * rng.uniform(0.45, 0.65)
    mid = (top + bottom) / 2
    # the nose lifts the top edge of a mask worn over it; below the nose the edge runs straight
    bump = 0.0 if top > g.nose_y else (mid - top) * (0.35 if style == "ffp2" else 0.15)
    pts = [(g.cx - w_top, top + 2), (g.cx - w_top * 0.4, top), (g.cx, top - bump), (g.cx + w_top * 0.4, top),
           (g.cx + w_top, top + 2), (g.cx + w_mid, mid), (g.cx + w_bot, bottom - 2), (g.cx, bottom),
           (g.cx - w_bot, bottom - 2), (g.cx - w_mid, mid)]
    if style == "surgical":  # squarer
        pts = [(g.cx - w_mid, top), (g.cx + w_mid, top), (g.cx + w_mid * 0.95, bottom - 1),
               (g.cx, bottom + 1), (g.cx - w_mid * 0.95, bottom - 1)]
    cv2.fillPoly(alpha, [_poly(pts)], 1.0, cv2.LINE_AA)
    return alpha


def texture(style: str, color: np.ndarray, g: Geometry, top: float, rng: np.random.Generator) -> np.ndarray:
    """RGB float texture (UP*CROP square) of a mask: colour, print, pleats or seam, and shading.
    Style `printed` is cloth that always carries a print."""
    n = CROP * UP
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / UP
    tex = np.broadcast_to(color, (n, n, 3)).copy()
    if style == "printed" or (style == "cloth" and rng.random() < 0.5):  # stripes, dots or checks
        other = PALETTE[rng.integers(len(PALETTE))]
        period = rng.uniform(2.5, 7)
        kind = rng.integers(3)
        if kind == 0:
            on = np.sin((xx * rng.uniform(-1, 1) + yy) / period * np.pi) > 0.3
        elif kind == 1:
            on = (np.sin(xx / period * np.pi) * np.sin(yy / period * np.pi)) > 0.6
        else:
            on = (np.sin(xx / period * np.pi) > 0) ^ (np.sin(yy / period * np.pi) > 0)
        tex[on] = other
    shade = np.ones((n, n), np.float32)
    if style == "surgical":
        for k in range(3):  # pleats
            y = top + (g.chin_y - top) * (0.3 + 0.2 * k)
            shade -= 0.18 * np.exp(-(((yy - y) / 0.7) ** 2))
    if style == "ffp2":
        shade -= 0.2 * np.exp(-(((xx - g.cx) / 0.6) ** 2)) * (yy > top)
    # round face: lit in the middle, darker towards the cheeks; light from one side
    side = rng.uniform(-0.25, 0.25)
    shade *= 0.75 + 0.25 * np.cos(np.clip((xx - g.cx) / (g.half_w * 1.3), -1.5, 1.5)) + side * (xx - g.cx) / g.half_w
    tex *= shade[:, :, None]
    tex += rng.normal(0, 4, tex.shape).astype(np.float32)
    return tex


def composite(face: np.ndarray, alpha: np.ndarray, tex: np.ndarray, follow: float = 0.35) -> np.ndarray:
    """Down-sample the 4x drawing and lay it on the crop, keeping some of the face's light."""
    a = cv2.resize(alpha, (CROP, CROP), interpolation=cv2.INTER_AREA)[:, :, None]
    t = cv2.resize(tex, (CROP, CROP), interpolation=cv2.INTER_AREA)
    f = face.astype(np.float32)
    lum = f.mean(2, keepdims=True)
    light = lum / max(float(lum[a[:, :, 0] > 0.5].mean()) if (a > 0.5).any() else 128.0, 1.0)
    t = t * ((1 - follow) + follow * light)
    return np.clip(f * (1 - a) + t * a, 0, 255).astype(np.uint8)


def _loops(alpha: np.ndarray, tex: np.ndarray, g: Geometry, top: float, color: np.ndarray) -> None:
    """Ear loops from the mask's upper corners towards the ears."""
    for s in (-1, 1):
        p0 = (g.cx + s * g.half_w * 0.95, top + 3)
        p1 = (g.cx + s * (g.half_w + 6), g.eye_y + 2)
        cv2.line(alpha, tuple(_poly([p0])[0]), tuple(_poly([p1])[0]), 1.0, UP, cv2.LINE_AA)
        cv2.line(tex, tuple(_poly([p0])[0]), tuple(_poly([p1])[0]), color.tolist(), UP, cv2.LINE_AA)


DARK = PALETTE[PALETTE.max(axis=1) < 100]


def draw_mask(face: np.ndarray, kind: str, rng: np.random.Generator, dark: bool = False) -> np.ndarray:
    """A mask of `kind` (a mask style, or a way of wearing it wrong); `dark`
    picks from the black/navy/grey colours only."""
    g = Geometry.sample(rng)
    style = str(rng.choice(KINDS["mask"])) if kind in KINDS["incorrect"] else kind
    colors = DARK if dark else PALETTE
    color = colors[rng.integers(len(colors))] * rng.uniform(0.85, 1.1)
    if kind == "below_nose":
        top = g.nose_y + rng.uniform(1.0, 3.0)
    elif kind == "on_chin":
        top = g.mouth_y + rng.uniform(1.5, 4.0)
    elif kind == "hanging":  # any height below the nose, shifted and turned (below)
        top = g.nose_y + rng.uniform(2.0, 8.0)
    else:  # worn properly: over the bridge of the nose
        top = g.nose_y - (g.nose_y - g.eye_y) * rng.uniform(0.35, 0.6)
    alpha = mask_shape(g, top, style, rng)
    tex = texture(style, color, g, top, rng)
    _loops(alpha, tex, g, top, color * 0.9)
    if kind == "hanging":
        m = cv2.getRotationMatrix2D((g.cx * UP, top * UP), float(rng.choice([-1, 1]) * rng.uniform(20, 50)), 1.0)
        m[0, 2] += rng.uniform(-6, 6) * UP
        m[1, 2] += rng.uniform(2, 8) * UP
        alpha = cv2.warpAffine(alpha, m, alpha.shape[::-1])
        tex = cv2.warpAffine(tex, m, alpha.shape[::-1])
    return composite(face, alpha, tex)


def skin_tone(face: np.ndarray, g: Geometry, rng: np.random.Generator) -> np.ndarray:
    x, y = int(g.cx + g.half_w * 0.6), int(g.nose_y)
    patch = face[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].reshape(-1, 3).astype(np.float32)
    return patch.mean(0) * rng.uniform(0.85, 1.15)


def draw_negative(face: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Something over the lower face that is not a mask (label stays no_mask)."""
    g = Geometry.sample(rng)
    n = CROP * UP
    alpha = np.zeros((n, n), np.float32)
    if kind == "hand":  # fingers across the mouth, a shade off the face's skin
        color = skin_tone(face, g, rng) * rng.uniform(0.8, 1.2)
        tilt = rng.uniform(-25, 25)
        cx, cy = g.cx + rng.uniform(-3, 3), g.mouth_y + rng.uniform(-1, 2)
        tex = np.broadcast_to(color, (n, n, 3)).copy()
        for k in range(4):
            fy = cy + (k - 1.5) * 3.2
            center = (int(cx * UP), int(fy * UP))
            axes = (int(g.half_w * rng.uniform(0.8, 1.0) * UP), int(1.7 * UP))
            cv2.ellipse(alpha, center, axes, tilt, 0, 360, 1.0, -1, cv2.LINE_AA)
            cv2.ellipse(tex, center, axes, tilt, 0, 360, (color * 0.7).tolist(), UP // 2, cv2.LINE_AA)
        return composite(face, alpha, tex, follow=0.3)
    if kind == "scarf":
        top = g.mouth_y + rng.uniform(4, 8)  # below the mouth: covers chin and neck, not the mouth
        cv2.rectangle(alpha, (0, int(top * UP)), (n, n), 1.0, -1)
        tex = texture("cloth", PALETTE[rng.integers(len(PALETTE))], g, top, rng)
        return composite(face, alpha, tex)
    if kind == "beard":  # hair texture around the mouth and over the jaw; lips stay visible
        color = np.array(rng.choice([(35, 25, 20), (60, 40, 25), (20, 20, 20), (110, 90, 70), (150, 150, 150)]),
                         np.float32)
        pts = [(g.cx - g.half_w * 1.05, g.nose_y), (g.cx - 5, g.nose_y + 3), (g.cx + 5, g.nose_y + 3),
               (g.cx + g.half_w * 1.05, g.nose_y), (g.cx + g.half_w * 0.8, g.chin_y),
               (g.cx, g.chin_y + rng.uniform(2, 8)), (g.cx - g.half_w * 0.8, g.chin_y)]
        cv2.fillPoly(alpha, [_poly(pts)], 1.0, cv2.LINE_AA)
        cv2.ellipse(alpha, (int(g.cx * UP), int((g.mouth_y + 0.5) * UP)), (int(5.5 * UP), int(2.4 * UP)),
                    0, 0, 360, 0.0, -1, cv2.LINE_AA)
        hair = rng.random((n // 2, n // 2)).astype(np.float32)
        hair = cv2.resize(cv2.GaussianBlur(hair, (1, 7), 0), (n, n))  # short vertical strands
        alpha = cv2.GaussianBlur(alpha, (0, 0), UP * 0.7) * (0.55 + 0.45 * hair)
        tex = color * (0.6 + 0.8 * hair[:, :, None])
        return composite(face, alpha, tex, follow=0.3)
    # phone or paper: a turned rectangle partly over the lower face
    w, h = (10, 18) if kind == "phone" else (22, 16)
    cx, cy = g.cx + rng.uniform(-14, 14), g.mouth_y + rng.uniform(0, 10)
    box = cv2.boxPoints(((cx * UP, cy * UP), (w * UP, h * UP), float(rng.uniform(-35, 35))))
    cv2.fillPoly(alpha, [box.astype(np.int32)], 1.0, cv2.LINE_AA)
    color = np.array((25, 25, 28) if kind == "phone" else (240, 240, 235), np.float32) * rng.uniform(0.8, 1.1)
    tex = np.broadcast_to(color, (n, n, 3)) + rng.normal(0, 5, (n, n, 3)).astype(np.float32)
    return composite(face, alpha, tex, follow=0.2)


def synthesize(faces: np.ndarray, n: int, seed: int, kinds: dict[str, tuple[str, ...]] | None = None
               ) -> tuple[np.ndarray, list[str], list[str]]:
    """`n` synthetic crops drawn on randomly chosen unmasked `faces` (N x CROP x CROP x 3).

    Returns (crops, labels, kinds); the label of each follows from its kind.
    """
    kinds = kinds or KINDS
    rng = np.random.default_rng(seed)
    flat = [(label, kind) for label, ks in kinds.items() for kind in ks]
    out, labels, names = [], [], []
    for _ in range(n):
        label, kind = flat[rng.integers(len(flat))]
        face = faces[rng.integers(len(faces))]
        draw = draw_negative if label == "no_mask" else draw_mask
        out.append(draw(face, kind, rng))
        labels.append(label)
        names.append(kind)
    return np.stack(out), labels, names


HARD_CASES: dict[str, tuple[str, str]] = {
    "hand": ("no_mask", "hand"),
    "scarf": ("no_mask", "scarf"),
    "beard": ("no_mask", "beard"),
    "phone": ("no_mask", "phone"),
    "paper": ("no_mask", "paper"),
    "dark_mask": ("mask", "dark"),
    "printed_mask": ("mask", "printed"),
    "below_nose": ("incorrect", "below_nose"),
    "on_chin": ("incorrect", "on_chin"),
}
"""Hard case -> (label, what is drawn). All synthetic: see `hard_cases`."""


def hard_cases(faces: np.ndarray, per_case: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    """A fixed, labelled set of hard cases, drawn on `faces` (use faces never
    trained on, e.g. the val split's): hard negatives and dark or printed masks."""
    rng = np.random.default_rng(seed)
    out, labels, names = [], [], []
    for name, (label, what) in HARD_CASES.items():
        for _ in range(per_case):
            face = faces[rng.integers(len(faces))]
            if label == "no_mask":
                crop = draw_negative(face, what, rng)
            elif what == "dark":
                crop = draw_mask(face, str(rng.choice(KINDS["mask"])), rng, dark=True)
            else:
                crop = draw_mask(face, what, rng)
            out.append(crop)
            labels.append(label)
            names.append(name)
    return np.stack(out), labels, names


def contact_sheet(crops: np.ndarray, captions: list[str], columns: int = 12, zoom: int = 2) -> np.ndarray:
    """A grid of crops with their captions, for a person to judge realism."""
    size = CROP * zoom
    rows = -(-len(crops) // columns)
    sheet = np.full((rows * (size + 14), columns * size, 3), 255, np.uint8)
    for i, (crop, cap) in enumerate(zip(crops, captions, strict=True)):
        r, c = divmod(i, columns)
        y, x = r * (size + 14), c * size
        sheet[y : y + size, x : x + size] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_NEAREST)
        cv2.putText(sheet, cap[:16], (x + 2, y + size + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
