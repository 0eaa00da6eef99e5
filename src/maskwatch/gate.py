"""Gate mode: one person at an entrance kiosk, one allow / deny verdict.

A kiosk camera sees the person at the front and, often, people behind or
passing by. Only the largest face whose centre is near the middle of the
frame decides; a face too small to judge asks the person to step closer.
Each frame gives a raw verdict; the verdict shown changes only when one
raw verdict has held most of the last `window` seconds, so a blink, a turn
of the head or one bad frame does not flash deny at someone wearing a mask.
Pure logic: frames in, verdicts out (`maskwatch gate` does the I/O).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from maskwatch.types import Box, Face, FrameResult

ALLOW, DENY, NO_FACE = "allow", "deny", "no_face"
VERDICTS = (ALLOW, DENY, NO_FACE)
REASONS = {
    "mask": "mask worn properly",
    "no_mask": "no mask",
    "incorrect": "mask not covering nose and mouth",
    "none": "no face near the centre",
    "small": "face too far away: step closer",
}


@dataclass(frozen=True)
class GateConfig:
    """`centre`: a face counts when its centre lies within this fraction of
    the frame's width and height around the middle (0.6: the middle 60 %).
    `min_face`: the shorter side in px a face needs to be judged (smaller
    ones get no_face, "step closer"). `window`: seconds of frames the shown
    verdict is taken from; `agree`: the share of them one verdict needs to
    replace the shown one; `min_frames`: frames needed in the window."""

    centre: float = 0.6
    min_face: float = 48.0
    window: float = 1.0
    agree: float = 0.7
    min_frames: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.centre <= 1:
            raise ValueError(f"centre must be in (0, 1], got {self.centre}")
        if not 0.5 < self.agree <= 1:
            raise ValueError(f"agree must be in (0.5, 1], got {self.agree}")
        if self.window < 0 or self.min_frames < 1 or self.min_face < 0:
            raise ValueError("window and min_face must be >= 0, min_frames >= 1")


@dataclass(frozen=True)
class Verdict:
    """What the gate says. `reason` is a key of REASONS; `confidence` is the
    classifier's mean confidence in `label` over the window's agreeing frames."""

    verdict: str
    reason: str
    time: float
    label: str | None = None
    confidence: float | None = None
    box: Box | None = None

    @property
    def message(self) -> str:
        return REASONS[self.reason]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.message, "time": round(self.time, 3),
                "label": self.label,
                "confidence": None if self.confidence is None else round(self.confidence, 4),
                "box": None if self.box is None else [round(v, 1) for v in self.box]}


def pick_face(faces: tuple[Face, ...] | list[Face], width: int, height: int, centre: float) -> Face | None:
    """The largest face whose centre is in the middle `centre` fraction of the frame."""
    half_w, half_h = width * centre / 2, height * centre / 2
    near = [f for f in faces if abs((f.box[0] + f.box[2]) / 2 - width / 2) <= half_w
            and abs((f.box[1] + f.box[3]) / 2 - height / 2) <= half_h]
    return max(near, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)


def frame_verdict(result: FrameResult, config: GateConfig, t: float) -> Verdict:
    """The raw verdict of one frame."""
    face = pick_face(result.faces, result.width, result.height, config.centre)
    if face is None:
        return Verdict(NO_FACE, "none", t)
    if min(face.box[2] - face.box[0], face.box[3] - face.box[1]) < config.min_face or face.label is None:
        return Verdict(NO_FACE, "small", t, box=face.box)
    return Verdict(ALLOW if face.label == "mask" else DENY, face.label, t, face.label, face.confidence, face.box)


class Gate:
    """The shown verdict over a sliding window of raw ones.

    Example:
        >>> gate = Gate()
        >>> changed = gate.update(result, t)  # a Verdict when the shown one changes, else None
    """

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self._recent: deque[Verdict] = deque()
        self.current: Verdict | None = None

    def update(self, result: FrameResult, t: float) -> Verdict | None:
        raw = frame_verdict(result, self.config, t)
        self._recent.append(raw)
        # At least min_frames are kept, so a slow camera still reaches a verdict.
        while len(self._recent) > self.config.min_frames and self._recent[0].time < t - self.config.window:
            self._recent.popleft()
        if len(self._recent) < self.config.min_frames:
            return None
        key, n = Counter((v.verdict, v.reason) for v in self._recent).most_common(1)[0]
        if n < self.config.agree * len(self._recent):
            return None
        if self.current is not None and (self.current.verdict, self.current.reason) == key:
            return None
        agreeing = [v for v in self._recent if (v.verdict, v.reason) == key]
        scores = [v.confidence for v in agreeing if v.confidence is not None]
        last = agreeing[-1]
        self.current = Verdict(last.verdict, last.reason, t, last.label,
                               sum(scores) / len(scores) if scores else None, last.box)
        return self.current
