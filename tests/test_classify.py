"""The shipped classifier: its card, its checksum, its outputs on real crops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskwatch.align import CROP, align_all
from maskwatch.classify import DEFAULT_MODEL, MaskClassifier, softmax
from maskwatch.decode import decode_file
from maskwatch.detect import CenterFace
from maskwatch.evaluate import iou

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def clf() -> MaskClassifier:
    return MaskClassifier()


def test_softmax_rows_sum_to_one_and_temperature_flattens() -> None:
    logits = np.array([[2.0, 0.0, -1.0]])
    p1, p2 = softmax(logits), softmax(logits, temperature=2.0)
    assert p1.sum() == pytest.approx(1.0) and p2.sum() == pytest.approx(1.0)
    # e^2 / (e^2 + 1 + e^-1) = 7.389 / 8.757 = 0.8438
    assert p1[0, 0] == pytest.approx(0.8438, abs=1e-4)
    assert p2[0, 0] < p1[0, 0]


def test_empty_batch(clf: MaskClassifier) -> None:
    assert clf(np.zeros((0, CROP, CROP, 3), np.uint8)).shape == (0, 3)


def test_model_is_small_and_card_matches() -> None:
    assert DEFAULT_MODEL.stat().st_size < 5_000_000
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert card["labels"] == ["mask", "no_mask", "incorrect"] and card["crop"] == CROP


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "classifier.onnx"
    shutil.copy(DEFAULT_MODEL, path)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), path.with_suffix(".json"))
    with path.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RuntimeError, match="checksum"):
        MaskClassifier(path)


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="nothere.onnx"):
        MaskClassifier(tmp_path / "nothere.onnx")


def test_real_faces_get_their_labels(clf: MaskClassifier) -> None:
    """Detected, aligned faces of example 787 (6 masked, 2 bare) in one batch."""
    entry = next(e for e in json.loads((EXAMPLES / "examples.json").read_text()) if "787" in e["image"])
    rgb = decode_file(EXAMPLES / entry["image"]).upright()
    faces = CenterFace()(rgb)
    pairs = [(gt["label"], max(faces, key=lambda f: iou(gt["box"], f.box))) for gt in entry["faces"]]
    probs = clf(align_all(rgb, [f for _, f in pairs]))
    masked = [p[0] for (label, _), p in zip(pairs, probs, strict=True) if label == "mask"]
    bare = [p[0] for (label, _), p in zip(pairs, probs, strict=True) if label == "no_mask"]
    assert min(masked) > max(bare)
    assert np.mean(masked) > 0.8 and np.mean(bare) < 0.3
