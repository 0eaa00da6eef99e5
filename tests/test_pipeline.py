"""The real detector and classifier on the committed example photos."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import maskwatch
from maskwatch.decode import decode_file
from maskwatch.evaluate import iou
from maskwatch.pipeline import Pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENTRIES = json.loads((EXAMPLES / "examples.json").read_text())


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline()


def best_match(box, faces):
    return max(faces, key=lambda f: iou(box, f.box), default=None)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["image"] for e in ENTRIES])
def test_finds_annotated_faces(pipe: Pipeline, entry: dict) -> None:
    result = pipe.analyze(EXAMPLES / entry["image"])
    assert (result.width, result.height) == (entry["width"], entry["height"])
    found = sum(1 for gt in entry["faces"] if iou(gt["box"], best_match(gt["box"], result.faces).box) >= 0.5)
    assert found >= len(entry["faces"]) - 1


def test_labels_mostly_right_on_examples(pipe: Pipeline) -> None:
    right = total = 0
    for entry in ENTRIES:
        result = pipe.analyze(EXAMPLES / entry["image"])
        for gt in entry["faces"]:
            face = best_match(gt["box"], result.faces)
            if face is None or iou(gt["box"], face.box) < 0.5:
                continue
            total += 1
            right += (face.label == "mask") == (gt["label"] == "mask")
    assert total >= 20  # of 23 annotated faces
    assert right / total >= 0.85, f"{right}/{total} masked-vs-not right"


def test_probabilities_are_a_distribution(pipe: Pipeline) -> None:
    result = pipe.analyze(EXAMPLES / "maksssksksss787.png")
    for face in result.faces:
        assert set(face.probs) == set(maskwatch.LABELS)
        assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert face.confidence == pytest.approx(face.probs[face.label])


def test_path_bytes_and_array_agree(pipe: Pipeline) -> None:
    path = EXAMPLES / "maksssksksss83.png"
    a = pipe.analyze(path)
    b = pipe.analyze(path.read_bytes())
    c = pipe.analyze(decode_file(path).pixels)
    assert [f.box for f in a.faces] == [f.box for f in b.faces] == [f.box for f in c.faces]
    assert [f.label for f in a.faces] == [f.label for f in c.faces]


def test_module_level_analyze_in_three_lines() -> None:
    result = maskwatch.analyze(str(EXAMPLES / "maksssksksss83.png"))
    assert len(result.faces) >= 3
    assert json.loads(json.dumps(result.to_dict()))["faces"][0]["label"] in maskwatch.LABELS


def _save(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_other_pixel_formats_find_the_same_faces(pipe: Pipeline, mode: str) -> None:
    rgb = Image.open(EXAMPLES / "maksssksksss787.png").convert("RGB")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    else:
        img = rgb.convert(mode)
    result = pipe.analyze(_save(img, format="PNG"))
    assert len(result.faces) >= 6


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_gives_boxes_in_stored_pixels(pipe: Pipeline, orientation: int) -> None:
    """Store the photo turned, with the EXIF tag that turns it back: the faces
    must be found, and their boxes must sit on the faces of the stored grid."""
    upright = Image.open(EXAMPLES / "maksssksksss787.png").convert("RGB")
    # the stored grid is the upright photo turned the inverse way
    stored = upright.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                8: Image.Transpose.ROTATE_270}[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(stored, format="JPEG", quality=95, exif=exif.tobytes())
    rotated = pipe.analyze(data)
    plain = pipe.analyze(_save(stored, format="JPEG", quality=95))  # no tag: same pixels, read sideways
    assert (rotated.width, rotated.height) == stored.size
    assert rotated.extra["orientation"] == orientation
    reference = pipe.analyze(_save(upright, format="JPEG", quality=95))
    assert len(rotated.faces) >= len(reference.faces) - 1
    if orientation in (6, 8):
        assert len(rotated.faces) > len(plain.faces)  # sideways faces are mostly missed
    # each stored-grid box, cut from the stored pixels and turned upright, is a face the reference found
    w, h = stored.size
    for face in rotated.faces:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert all(0 <= x <= w and 0 <= y <= h for x, y in face.landmarks)
    ref_boxes = [f.box for f in reference.faces]
    from maskwatch.pipeline import upright_face

    hits = sum(max(iou(upright_face(f, orientation, w, h).box, b) for b in ref_boxes) > 0.7 for f in rotated.faces)
    assert hits >= len(rotated.faces) - 1
