"""Detect, align and classify: the one entry point the edges call.

Detection runs on the upright image (EXIF orientation applied) so turned
photos are read the way people see them; the result is then mapped back to
the pixel grid as stored on disk, which is what `FrameResult` holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from maskwatch.align import align_all
from maskwatch.annotate import annotate
from maskwatch.classify import MaskClassifier
from maskwatch.decode import (
    Decoded,
    boxes_to_stored,
    boxes_to_upright,
    decode_bytes,
    decode_file,
    to_stored,
    to_upright,
)
from maskwatch.detect import CenterFace, DetectorConfig
from maskwatch.types import DEFAULT_THRESHOLD, LABELS, Face, FrameResult

ImageInput = str | os.PathLike[str] | bytes | np.ndarray


@dataclass(frozen=True)
class PipelineConfig:
    """`threshold`: p(mask) a face needs to count as properly masked. Lower
    it to flag fewer people (more missed offenders), raise it to flag more.
    See `types.DEFAULT_THRESHOLD`."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    threshold: float = DEFAULT_THRESHOLD
    classifier: Path | None = None
    threads: int | None = None


class Pipeline:
    """Holds one detector and one classifier session; reuse it across images."""

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.detector = CenterFace(self.config.detector, self.config.threads)
        self.classifier = MaskClassifier(self.config.classifier, self.config.threads)

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """Detected and classified faces of an upright RGB image, in its pixels."""
        faces = self.detector(rgb)
        probs = self.classifier(align_all(rgb, faces))
        return [f.with_class(dict(zip(LABELS, map(float, p), strict=True)), self.config.threshold)
                for f, p in zip(faces, probs, strict=True)]

    def analyze_decoded(self, decoded: Decoded, name: str) -> FrameResult:
        faces = self.faces(decoded.upright())
        faces = [stored_face(f, decoded.orientation, decoded.width, decoded.height) for f in faces]
        extra = {"orientation": decoded.orientation} if decoded.orientation != 1 else {}
        return FrameResult(name, decoded.width, decoded.height, tuple(faces), extra=extra)

    def analyze(self, image: ImageInput, name: str | None = None) -> FrameResult:
        """Faces in a path, encoded bytes, or an RGB (or grey) uint8 array."""
        if isinstance(image, np.ndarray):
            return self.analyze_decoded(Decoded(as_rgb(image)), name or "array")
        if isinstance(image, bytes):
            return self.analyze_decoded(decode_bytes(image), name or "bytes")
        return self.analyze_decoded(decode_file(image), name or str(image))

    def annotated(self, decoded: Decoded, result: FrameResult) -> np.ndarray:
        """The upright image with the result drawn on it, as a viewer sees it."""
        faces = [upright_face(f, decoded.orientation, decoded.width, decoded.height) for f in result.faces]
        return annotate(decoded.upright(), faces)


def as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"expected an H x W x 3 RGB array, got shape {image.shape}")


def _moved(face: Face, orientation: int, width: int, height: int, points_fn, boxes_fn) -> Face:
    if orientation == 1:
        return face
    box = boxes_fn(np.array([face.box]), orientation, width, height)[0]
    lms = points_fn(np.array(face.landmarks), orientation, width, height) if face.landmarks else []
    return replace(face, box=tuple(map(float, box)), landmarks=tuple((float(x), float(y)) for x, y in lms))


def stored_face(face: Face, orientation: int, width: int, height: int) -> Face:
    """A face found on the upright image, in the stored grid (stored size given)."""
    return _moved(face, orientation, width, height, to_stored, boxes_to_stored)


def upright_face(face: Face, orientation: int, width: int, height: int) -> Face:
    return _moved(face, orientation, width, height, to_upright, boxes_to_upright)


_default: Pipeline | None = None


def analyze(image: ImageInput) -> FrameResult:
    """Faces in one image with the default models: `maskwatch.analyze("photo.jpg")`."""
    global _default
    if _default is None:
        _default = Pipeline()
    return _default.analyze(image)
