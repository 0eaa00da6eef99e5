"""The one result type every stage takes and returns.

A photo, a video frame or an HTTP upload all end up as a `FrameResult`
holding `Face`s; the CLI, evaluation, video, alerts and the server only read
it. It imports nothing else of maskwatch so that every module can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

LABELS: tuple[str, ...] = ("mask", "no_mask", "incorrect")
"""Class order of the classifier's outputs; `mask` means worn properly."""

DEFAULT_THRESHOLD = 0.7
"""p(mask) a face needs to count as properly masked: the largest threshold on
a 0.1 grid whose val FNR stays under 0.02 (see docs/model-card.md)."""

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the image as stored on disk.

    `label`, `confidence` and `probs` are None until the classifier ran.
    """

    box: Box
    score: float
    landmarks: tuple[Point, ...] = ()
    label: str | None = None
    confidence: float | None = None
    probs: dict[str, float] | None = None

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box
        if not (x2 >= x1 and y2 >= y1):
            raise ValueError(f"box must be [x1, y1, x2, y2] with x2 >= x1, y2 >= y1, got {self.box}")
        if self.landmarks and len(self.landmarks) != 5:
            raise ValueError(f"expected 5 landmarks, got {len(self.landmarks)}")
        if self.label is not None and self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")

    @property
    def size(self) -> float:
        """The longer box side: the face size used for size buckets."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def masked_prob(self) -> float | None:
        """Probability that the mask is worn properly."""
        return None if self.probs is None else self.probs["mask"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }
        if self.label is not None:
            out["label"] = self.label
            out["confidence"] = round(float(self.confidence or 0.0), 4)
            out["probs"] = {k: round(float(v), 4) for k, v in (self.probs or {}).items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Face:
        return cls(
            box=tuple(float(v) for v in d["box"]),  # type: ignore[arg-type]
            score=float(d.get("score", 1.0)),
            landmarks=tuple((float(x), float(y)) for x, y in d.get("landmarks", [])),
            label=d.get("label"),
            confidence=d.get("confidence"),
            probs=d.get("probs"),
        )

    def with_class(self, probs: dict[str, float], threshold: float) -> Face:
        """Label from probabilities: `mask` only if p(mask) >= threshold."""
        if probs["mask"] >= threshold:
            label = "mask"
        else:
            label = max(("no_mask", "incorrect"), key=lambda k: probs[k])
        return replace(self, label=label, confidence=probs[label], probs=probs)


@dataclass(frozen=True)
class FrameResult:
    """Everything found in one image or frame.

    `image` names the source (a path, a URL, `frame 17`); `error` is set
    instead of faces when the input could not be read.
    """

    image: str
    width: int
    height: int
    faces: tuple[Face, ...] = ()
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {label: 0 for label in LABELS}
        for face in self.faces:
            if face.label is not None:
                out[face.label] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
        }
        if self.error is not None:
            out["error"] = self.error
        for key, value in self.extra.items():
            out.setdefault(key, value)  # an extra key never hides a schema field
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameResult:
        known = {"image", "width", "height", "faces", "error"}
        return cls(
            image=d["image"],
            width=int(d["width"]),
            height=int(d["height"]),
            faces=tuple(Face.from_dict(f) for f in d.get("faces", [])),
            error=d.get("error"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    @classmethod
    def failed(cls, image: str, error: str) -> FrameResult:
        return cls(image=image, width=0, height=0, error=error)
