"""maskwatch.types: Face validation, the JSON schema, class thresholds and FrameResult helpers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from maskwatch.types import LABELS, Face, FrameResult

LANDMARKS = ((10.0, 12.0), (20.0, 12.0), (15.0, 16.0), (11.0, 20.0), (19.0, 20.0))


def classified(probs: dict[str, float], threshold: float = 0.5) -> Face:
    return Face((0.0, 0.0, 30.0, 30.0), 0.9, LANDMARKS).with_class(probs, threshold)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"box": (10, 0, 5, 10)}, ValueError, "x2 >= x1"),  # x2 < x1
        ({"box": (0, 10, 10, 5)}, ValueError, "y2 >= y1"),  # y2 < y1
        ({"box": (0, 0, float("nan"), 10)}, ValueError, "box must be"),  # NaN compares False
        ({"box": (0, 0, 10)}, ValueError, "not enough values"),  # three numbers cannot unpack
        ({"box": (0, 0, 10, 10, 1)}, ValueError, "too many values"),
        ({"landmarks": LANDMARKS[:3]}, ValueError, "expected 5 landmarks, got 3"),
        ({"landmarks": (*LANDMARKS, (1.0, 1.0))}, ValueError, "expected 5 landmarks, got 6"),
        ({"label": "hat"}, ValueError, "label must be one of"),
        ({"label": "Mask"}, ValueError, "label must be one of"),  # labels are case-sensitive
        ({}, None, None),
        ({"box": (5, 5, 5, 5)}, None, None),  # a zero-size box is allowed (x2 == x1)
        ({"landmarks": LANDMARKS, "label": "incorrect"}, None, None),
    ],
)
def test_face_validation(kwargs: dict, error: type[Exception] | None, message: str | None) -> None:
    args = {"box": (0, 0, 10, 10), "score": 0.5, **kwargs}
    if error is None:
        face = Face(**args)
        assert face.box == args["box"]
    else:
        with pytest.raises(error, match=message):
            Face(**args)


def test_face_is_immutable_and_reports_its_size() -> None:
    face = Face((10, 20, 40, 100), 0.7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.score = 0.1  # type: ignore[misc]
    assert face.size == 80  # max(40 - 10, 100 - 20)
    assert face.masked_prob is None  # not classified yet
    assert classified({"mask": 0.6, "no_mask": 0.3, "incorrect": 0.1}).masked_prob == 0.6


@pytest.mark.parametrize(
    ("probs", "threshold", "label", "confidence"),
    [
        # p(mask) .4 >= .4: the threshold itself counts as masked.
        ({"mask": 0.4, "no_mask": 0.35, "incorrect": 0.25}, 0.4, "mask", 0.4),
        # .4 < .41: not mask; no_mask .35 beats incorrect .25.
        ({"mask": 0.4, "no_mask": 0.35, "incorrect": 0.25}, 0.41, "no_mask", 0.35),
        # p(mask) .5 is the largest but under .6, so the larger of the rest wins: incorrect .3.
        ({"mask": 0.5, "no_mask": 0.2, "incorrect": 0.3}, 0.6, "incorrect", 0.3),
        # A low threshold accepts a mask that is not the argmax: .2 >= .15.
        ({"mask": 0.2, "no_mask": 0.7, "incorrect": 0.1}, 0.15, "mask", 0.2),
        # no_mask and incorrect tie at .4: the first of (no_mask, incorrect) is kept.
        ({"mask": 0.2, "no_mask": 0.4, "incorrect": 0.4}, 0.5, "no_mask", 0.4),
    ],
)
def test_with_class_threshold(probs: dict[str, float], threshold: float, label: str, confidence: float) -> None:
    face = Face((1, 2, 3, 4), 0.8)
    out = face.with_class(probs, threshold)
    assert (out.label, out.confidence, out.probs) == (label, confidence, probs)
    assert (out.box, out.score) == (face.box, face.score)
    assert face.label is None  # a new Face; the original is unchanged


def test_face_json_schema_has_exactly_the_documented_keys() -> None:
    d = classified({"mask": 0.1, "no_mask": 0.7, "incorrect": 0.2}).to_dict()
    assert set(d) == {"box", "score", "landmarks", "label", "confidence", "probs"}
    assert d["box"] == [0.0, 0.0, 30.0, 30.0]
    assert d["landmarks"] == [list(p) for p in LANDMARKS]
    assert len(d["landmarks"]) == 5 and all(len(p) == 2 for p in d["landmarks"])
    assert (d["label"], d["confidence"]) == ("no_mask", 0.7)
    assert set(d["probs"]) == set(LABELS) == {"mask", "no_mask", "incorrect"}
    # Not classified: no label, confidence or probs keys at all.
    assert set(Face((0, 0, 1, 1), 0.5).to_dict()) == {"box", "score", "landmarks"}


def test_face_to_dict_rounds_coordinates_and_probabilities() -> None:
    face = Face((1.23456, 2.0, 3.005001, 4.999), 0.123456, ((1.111, 2.226),) * 5).with_class(
        {"mask": 0.33333333, "no_mask": 0.33333334, "incorrect": 0.33333333}, 0.5
    )
    d = face.to_dict()
    assert d["box"] == [1.23, 2.0, 3.01, 5.0]  # 2 decimals
    assert d["score"] == 0.1235  # 4 decimals
    assert d["landmarks"][0] == [1.11, 2.23]
    assert d["label"] == "no_mask"  # .33333334 is the larger of no_mask/incorrect
    assert d["probs"] == {"mask": 0.3333, "no_mask": 0.3333, "incorrect": 0.3333}


def test_face_round_trip_through_json() -> None:
    face = classified({"mask": 0.25, "no_mask": 0.25, "incorrect": 0.5})
    again = Face.from_dict(json.loads(json.dumps(face.to_dict())))
    assert again == face
    assert again.label == "incorrect" and again.landmarks == LANDMARKS


def test_face_from_minimal_annotation_dict() -> None:
    # The examples.json layout: a box and a label, no score or landmarks.
    face = Face.from_dict({"box": [37, 60, 112, 137], "label": "mask"})
    assert face == Face((37.0, 60.0, 112.0, 137.0), 1.0, (), "mask")
    with pytest.raises(ValueError, match="label must be one of"):
        Face.from_dict({"box": [0, 0, 1, 1], "label": "with_mask"})


def frame() -> FrameResult:
    faces = (
        classified({"mask": 0.9, "no_mask": 0.05, "incorrect": 0.05}),
        classified({"mask": 0.8, "no_mask": 0.1, "incorrect": 0.1}),
        classified({"mask": 0.1, "no_mask": 0.2, "incorrect": 0.7}),
        Face((5, 5, 9, 9), 0.4),  # not classified: not counted
    )
    return FrameResult("photo.jpg", 640, 480, faces, extra={"orientation": 6})


def test_frame_counts_classified_faces_per_label() -> None:
    assert frame().counts() == {"mask": 2, "no_mask": 0, "incorrect": 1}
    assert FrameResult("empty.jpg", 10, 10).counts() == {"mask": 0, "no_mask": 0, "incorrect": 0}


def test_frame_json_schema_and_round_trip() -> None:
    d = frame().to_dict()
    assert list(d) == ["image", "width", "height", "faces", "orientation"]  # no error key when it worked
    assert (d["image"], d["width"], d["height"], len(d["faces"])) == ("photo.jpg", 640, 480, 4)
    again = FrameResult.from_dict(json.loads(json.dumps(d)))
    assert again == frame()
    assert again.extra == {"orientation": 6}


def test_failed_frame() -> None:
    failed = FrameResult.failed("broken.jpg", "not an image")
    assert (failed.image, failed.width, failed.height, failed.faces, failed.error) == (
        "broken.jpg",
        0,
        0,
        (),
        "not an image",
    )
    d = failed.to_dict()
    assert d == {"image": "broken.jpg", "width": 0, "height": 0, "faces": [], "error": "not an image"}
    assert FrameResult.from_dict(d) == failed


def test_committed_examples_json_reads_as_frame_results(examples_dir) -> None:
    entries = json.loads((examples_dir / "examples.json").read_text())
    results = [FrameResult.from_dict(e) for e in entries]
    # examples/README.md: 3 + 5 + 8 + 7 faces; 14 mask, 6 no_mask, 3 incorrect in all.
    assert sorted(len(r.faces) for r in results) == [3, 5, 7, 8]
    totals = {k: sum(r.counts()[k] for r in results) for k in LABELS}
    assert totals == {"mask": 14, "no_mask": 6, "incorrect": 3}
    assert all(r.extra == {"source": "kaggle-andrewmvd"} and r.error is None for r in results)


def test_extra_keys_never_hide_schema_fields() -> None:
    from maskwatch.types import FrameResult

    r = FrameResult("a.jpg", 4, 3, extra={"image": "wrong", "faces": "wrong", "frame": 7})
    d = r.to_dict()
    assert d["image"] == "a.jpg" and d["faces"] == [] and d["frame"] == 7
