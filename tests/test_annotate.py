"""maskwatch.annotate: a new image with boxes in label colours, sized to the image."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.annotate import COLORS, annotate, caption, style
from maskwatch.types import Face

BACKGROUND = (50, 50, 50)
MASK, NO_MASK, INCORRECT, UNCLASSIFIED = (0, 200, 0), (230, 0, 0), (255, 140, 0), (160, 160, 160)


def grey(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)


def labelled(box: tuple[float, float, float, float], label: str | None, score: float = 0.9) -> Face:
    face = Face(box, score)
    if label is None:
        return face
    probs = {"mask": 0.05, "no_mask": 0.05, "incorrect": 0.05, label: 0.9}
    return face.with_class(probs, threshold=0.5)


def test_colours_are_the_documented_rgb_values() -> None:
    assert COLORS == {"mask": MASK, "no_mask": NO_MASK, "incorrect": INCORRECT, None: UNCLASSIFIED}


def test_returns_a_new_image_and_leaves_the_input_alone() -> None:
    image = grey(400, 300)
    before = image.copy()
    out = annotate(image, [labelled((100, 120, 300, 260), "mask")])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, before)
    assert (out != image).any()  # something was drawn on the copy
    empty = annotate(image, [])
    np.testing.assert_array_equal(empty, image)
    assert not np.shares_memory(empty, image)


@pytest.mark.parametrize(("label", "colour"), [("mask", MASK), ("no_mask", NO_MASK), ("incorrect", INCORRECT)])
def test_box_edges_carry_the_label_colour(label: str, colour: tuple[int, int, int]) -> None:
    # 1000 px wide: line thickness round(1000 / 500) = 2, so the pixels on the box coordinates are solid.
    out = annotate(grey(1000, 700), [labelled((300, 300, 900, 650), label)])
    assert tuple(out[650, 600]) == colour  # bottom edge
    assert tuple(out[500, 300]) == colour  # left edge
    assert tuple(out[500, 900]) == colour  # right edge
    assert tuple(out[300, 850]) == colour  # top edge, right of the caption
    assert tuple(out[500, 600]) == BACKGROUND  # inside the box nothing is drawn
    # The caption sits above the box on a filled rectangle of the same colour.
    assert (out[250:300, 300:450] == colour).all(axis=2).sum() > 100


@pytest.mark.parametrize("label", ["mask", "no_mask", "incorrect", None])
def test_thin_antialiased_edges_are_nearest_to_their_label_colour(label: str | None) -> None:
    # 400 px: 1-px anti-aliased lines blend a little with the background (green 200 comes out near 186).
    out = annotate(grey(400, 300), [labelled((100, 120, 300, 260), label)])
    palette = {**COLORS, "background": BACKGROUND}
    for y, x in [(260, 200), (190, 100), (190, 300)]:
        pixel = out[y, x].astype(int)
        nearest = min(palette, key=lambda k: np.abs(pixel - palette[k]).sum())
        assert nearest == label, (y, x, pixel)
        assert np.abs(pixel - COLORS[label]).max() <= 25


@pytest.mark.parametrize(
    ("width", "height", "thickness", "font_scale"),
    [
        (400, 300, 1, 0.35),  # round(.8) = 1; 400 / 1400 = .29 -> floor of .35
        (300, 400, 1, 0.35),  # the long side counts, not the width
        (100, 50, 1, 0.35),  # never thinner than 1 px
        (1000, 700, 2, 1000 / 1400),  # .714
        (1920, 1080, 4, 1920 / 1400),  # round(3.84) = 4, 1.371
        (3840, 2160, 8, 3840 / 1400),  # round(7.68) = 8, 2.743
    ],
)
def test_style_grows_with_image_size(width: int, height: int, thickness: int, font_scale: float) -> None:
    t, s = style(width, height)
    assert t == thickness and isinstance(t, int)
    assert s == pytest.approx(font_scale)


def drawn_width(out: np.ndarray, y: int, x_from: int, x_to: int) -> int:
    """Pixels along row y, between x_from and x_to, that differ from the background."""
    return int((np.abs(out[y, x_from:x_to].astype(int) - BACKGROUND).max(axis=1) > 20).sum())


def test_lines_and_captions_are_bigger_on_a_4k_frame() -> None:
    small = annotate(grey(400, 300), [labelled((100, 100, 300, 250), "mask")])
    big = annotate(grey(3840, 2160), [labelled((1000, 1000, 2000, 1800), "mask")])
    # Across the left edge: 3 px (a 1-px line plus anti-aliasing) against 11 (thickness 8 plus anti-aliasing).
    assert drawn_width(small, 175, 90, 110) <= 3
    assert drawn_width(big, 1400, 980, 1020) >= 9
    # Rows of solid caption background above the box: 12 at font scale .35 against 77 at 2.74.
    small_rows = (small[:100] == MASK).all(axis=2).any(axis=1).sum()
    big_rows = (big[:1000] == MASK).all(axis=2).any(axis=1).sum()
    assert big_rows > 5 * small_rows > 0


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 60, 50),  # top-left corner: no room above, caption goes below
        (340, 250, 400, 300),  # bottom-right corner
        (0, 0, 400, 300),  # the whole image
        (-30, -20, 50, 40),  # partly outside
        (390, 10, 450, 60),  # mostly off the right edge: caption pulled back inside
        (500, 400, 600, 500),  # wholly outside
    ],
)
def test_faces_at_the_border_do_not_crash(box: tuple[float, float, float, float]) -> None:
    out = annotate(grey(400, 300), [labelled(box, "no_mask")])
    assert out.shape == (300, 400, 3)


def test_caption_goes_below_a_face_touching_the_top() -> None:
    out = annotate(grey(1000, 700), [labelled((0, 0, 200, 150), "incorrect")])
    # y1 = 0 leaves no room above: the caption is drawn under the box, inside the image.
    below = (out[152:200, 0:200] == INCORRECT).all(axis=2).sum()
    assert below > 100


def test_small_faces_are_drawn_last() -> None:
    # Both boxes share the left edge x = 50: the big one is drawn first, the small one over it,
    # whatever order they come in.
    big, small = labelled((50, 50, 600, 600), "no_mask"), labelled((50, 300, 150, 400), "mask")
    for faces in ([big, small], [small, big]):
        out = annotate(grey(1000, 700), faces)
        assert tuple(out[350, 50]) == MASK  # where they overlap
        assert tuple(out[500, 50]) == NO_MASK  # the big box alone


def test_caption_text() -> None:
    assert caption(labelled((0, 0, 1, 1), "mask")) == "mask 0.90"
    assert caption(labelled((0, 0, 1, 1), "incorrect")) == "incorrect 0.90"
    assert caption(Face((0, 0, 1, 1), 0.456)) == "face 0.46"
