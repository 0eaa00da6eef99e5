"""Follow faces across video frames and give each person one mask label.

ByteTrack (the `trackers` package, pinned in pyproject) links the detector's
boxes from frame to frame; this module adds what ByteTrack knows nothing
about: each track's label is a confidence-weighted vote over the frames in
which its face was classified, so one blurred or turned-away frame does not
flip it, and a track stays `unknown` until it has `min_votes` frames of
evidence. Faces too small for the classifier, or classified with low
confidence, are tracked but do not vote.

The tracker reads `FrameResult`s and returns them with `extra["track_ids"]`
(a list parallel to `faces`, None for a face not yet confirmed as a track),
`extra["track_labels"]` and `extra["track_confidences"]` (each face's
track label so far and its share of the vote) and `extra["detected"]`
(False on frames between detections); the faces themselves and the JSON
schema are unchanged.

`--detect-every N`: on frames without detection `hold` re-emits the faces
of the last detection frame, each moved by its track's velocity (measured
between its last two detections), labels unchanged; they add no votes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from maskwatch.types import LABELS, Box, Face, FrameResult

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
"""Label of a track without enough evidence yet."""


@dataclass(frozen=True)
class TrackConfig:
    """How tracks are formed and labelled.

    `min_face`: faces whose longer box side is below this many pixels still
    get tracked but do not vote (the classifier sees a 64 px crop upscaled
    from a few pixels and is unreliable there). `min_confidence`: frames
    classified with less confidence do not vote. `min_votes`: voting frames
    a track needs before it gets a label; until then it is `unknown` (more
    means fewer wrong early labels but a later answer). `lost_seconds`: how
    long a track survives without a matching face (occlusion, a missed
    detection) before it ends; longer keeps ids through gaps but may hand an
    id to someone else who steps in. `start_score`: detector score a new
    face needs to start a track (the detector's own threshold is lower, to
    find small faces; faint ones may still extend an existing track).
    `min_iou`: box overlap with a track's predicted box needed to match.
    `confirm_frames`: consecutive detections before a track gets an id.
    `max_turn`: faces turned further from the camera than this do not vote
    (see `turn`; a frontal face is about 0, the Kaggle photos' faces reach
    0.6, a profile is above 1): a mask seen edge-on is easily misread.
    `rejoin_seconds`: in the run summary, a track that starts where another
    ended less than this long before is the same person, re-tracked after the
    tracker lost them for a moment (see `join_retracked`); 0: never.
    """

    min_face: float = 24.0
    min_confidence: float = 0.6
    min_votes: int = 3
    lost_seconds: float = 1.0
    start_score: float = 0.5
    min_iou: float = 0.2
    confirm_frames: int = 2
    max_turn: float = 0.8
    rejoin_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.min_votes < 1:
            raise ValueError(f"min_votes must be >= 1, got {self.min_votes}")
        if self.lost_seconds <= 0:
            raise ValueError(f"lost_seconds must be > 0, got {self.lost_seconds}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


def turn(face: Face) -> float:
    """How far the head is turned sideways: the nose's offset from the point
    between the eyes, in eye distances (0 without landmarks)."""
    if not face.landmarks:
        return 0.0
    (lx, _), (rx, _), (nx, _) = face.landmarks[:3]
    return abs(nx - (lx + rx) / 2) / max(1.0, abs(rx - lx))


def counts_as_vote(face: Face, config: TrackConfig) -> bool:
    """Whether this classified face is trustworthy enough to vote: big enough,
    classified with confidence, not turned away."""
    return (face.label is not None and face.size >= config.min_face
            and (face.confidence or 0.0) >= config.min_confidence and turn(face) <= config.max_turn)


def tally(votes: Iterable[tuple[str, float]]) -> tuple[dict[str, float], int]:
    """(summed confidence per label, number of votes) of (label, confidence) votes."""
    weights = dict.fromkeys(LABELS, 0.0)
    n = 0
    for label, confidence in votes:
        weights[label] += confidence
        n += 1
    return weights, n


def decide(weights: dict[str, float], n_votes: int, config: TrackConfig) -> tuple[str, float]:
    """(label, share of the vote weight it got); `unknown` below `min_votes`.

    The winner is the label with the largest summed confidence: two confident
    `mask` frames outweigh one doubtful `no_mask`, and a single bad frame
    among many cannot flip the label.
    """
    total = sum(weights.values())
    if n_votes < config.min_votes or total <= 0:
        return UNKNOWN, 0.0
    label = max(LABELS, key=lambda k: weights[k])
    return label, weights[label] / total


@dataclass(frozen=True)
class Track:
    """One person's face followed through the video (times in seconds)."""

    track_id: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    frames: int = 1
    """Detection frames in which the face was matched."""
    votes: int = 0
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LABELS, 0.0))
    label: str = UNKNOWN
    confidence: float = 0.0
    face: Face | None = None
    """The face at the last detection frame (for re-emitting in between)."""
    first_box: Box | None = None
    """Where the face was when the track began."""
    velocity: tuple[float, float] = (0.0, 0.0)
    """Box centre motion in pixels per second, between the last two detections."""

    def seen(self, face: Face, frame: int, time: float, config: TrackConfig) -> Track:
        """This track after one more matched detection."""
        weights, votes = self.weights, self.votes
        if counts_as_vote(face, config):
            weights = {k: v + (face.confidence or 0.0) * (k == face.label) for k, v in weights.items()}
            votes += 1
        label, confidence = decide(weights, votes, config)
        velocity = self.velocity
        if self.face is not None and time > self.last_time:
            (cx0, cy0), (cx1, cy1) = centre(self.face), centre(face)
            dt = time - self.last_time
            velocity = ((cx1 - cx0) / dt, (cy1 - cy0) / dt)
        return replace(self, last_frame=frame, last_time=time, frames=self.frames + 1, votes=votes,
                       weights=weights, label=label, confidence=confidence, face=face, velocity=velocity)

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "first_time": round(self.first_time, 3),
                "last_time": round(self.last_time, 3), "first_frame": self.first_frame,
                "last_frame": self.last_frame, "frames": self.frames, "votes": self.votes,
                "label": self.label, "confidence": round(self.confidence, 4),
                "weights": {k: round(v, 4) for k, v in self.weights.items()}}


def near(a: Box, b: Box) -> bool:
    """Centres closer than the larger box's size: where one person can move in a moment."""
    reach = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
    return abs((a[0] + a[2]) - (b[0] + b[2])) / 2 <= reach and abs((a[1] + a[3]) - (b[1] + b[3])) / 2 <= reach


def continues(earlier: Track, later: Track, rejoin_seconds: float) -> bool:
    """Whether `later` starts where `earlier` vanished, moments after: one person re-tracked."""
    gap = later.first_time - earlier.last_time
    return (0 <= gap <= rejoin_seconds and earlier.face is not None and later.first_box is not None
            and near(earlier.face.box, later.first_box))


def join_retracked(tracks: Sequence[Track], config: TrackConfig) -> list[Track]:
    """One track per person: a track that `continues` another is merged into
    it (votes pooled, label decided again, the first track's id kept)."""
    people: list[Track] = []
    for t in sorted(tracks, key=lambda t: (t.first_time, t.track_id)):
        k = next((i for i in range(len(people) - 1, -1, -1) if continues(people[i], t, config.rejoin_seconds)), None)
        if k is None:
            people.append(t)
            continue
        p = people[k]
        weights = {label: p.weights[label] + t.weights[label] for label in LABELS}
        label, confidence = decide(weights, p.votes + t.votes, config)
        people[k] = replace(p, last_frame=t.last_frame, last_time=t.last_time, frames=p.frames + t.frames,
                            votes=p.votes + t.votes, weights=weights, label=label, confidence=confidence,
                            face=t.face, velocity=t.velocity)
    return people


def centre(face: Face) -> tuple[float, float]:
    x1, y1, x2, y2 = face.box
    return (x1 + x2) / 2, (y1 + y2) / 2


def shifted(face: Face, dx: float, dy: float, width: int, height: int) -> Face:
    """The face moved by (dx, dy) pixels, its box kept inside the frame."""
    x1, y1, x2, y2 = face.box
    dx = min(max(dx, -x1), width - x2)
    dy = min(max(dy, -y1), height - y2)
    if dx == 0 and dy == 0:
        return face
    return replace(face, box=(x1 + dx, y1 + dy, x2 + dx, y2 + dy),
                   landmarks=tuple((x + dx, y + dy) for x, y in face.landmarks))


class FaceTracker:
    """ByteTrack over detected faces plus a label vote per track.

    Settings go to `__init__`; frames go to `update` (detection frames) and
    `hold` (frames between detections). Tracks that ByteTrack has dropped
    are handed out once by `retire`; `finish` hands out the rest.

    Example:
        >>> tracker = FaceTracker(TrackConfig(), fps=25)
        >>> tracked = tracker.update(pipeline.analyze(rgb), frame=0, time=0.0)
        >>> tracked.extra["track_ids"]
    """

    def __init__(self, config: TrackConfig | None = None, fps: float = 25.0) -> None:
        from trackers import ByteTrackTracker

        self.config = cfg = config or TrackConfig()
        self.bytetrack = ByteTrackTracker(
            lost_track_buffer=max(1, round(cfg.lost_seconds * 30)),  # counted in 30 fps frames
            frame_rate=fps,
            track_activation_threshold=cfg.start_score,
            minimum_consecutive_frames=cfg.confirm_frames,
            minimum_iou_threshold=cfg.min_iou,
            high_conf_det_threshold=cfg.start_score,
        )
        self.tracks: dict[int, Track] = {}
        self._held: list[tuple[Face, int | None]] = []
        self._held_time = 0.0

    def assign(self, faces: tuple[Face, ...] | list[Face], time: float) -> list[int | None]:
        """ByteTrack ids for `faces` at `time` (None: not a confirmed track yet)."""
        import supervision as sv

        if faces:
            dets = sv.Detections(xyxy=np.array([f.box for f in faces], dtype=np.float32),
                                 confidence=np.array([f.score for f in faces], dtype=np.float32),
                                 data={"face": np.arange(len(faces))})
        else:
            dets = sv.Detections.empty()
        out = self.bytetrack.update(dets, timestamp=time)
        ids: list[int | None] = [None] * len(faces)
        if len(out):
            for i, tid in zip(out.data["face"], out.tracker_id, strict=True):
                ids[int(i)] = int(tid) if tid >= 0 else None
        return ids

    def update(self, result: FrameResult, frame: int, time: float) -> FrameResult:
        """`result` with its faces' track ids and track labels in `extra`."""
        ids = self.assign(result.faces, time)
        for face, tid in zip(result.faces, ids, strict=True):
            if tid is None:
                continue
            track = self.tracks.get(tid)
            if track is None:
                track = Track(tid, frame, frame, time, time, frames=0, first_box=face.box)
            self.tracks[tid] = track.seen(face, frame, time, self.config)
        self._held = list(zip(result.faces, ids, strict=True))
        self._held_time = time
        return self._tracked(result, ids, detected=True)

    def hold(self, image: str, width: int, height: int, time: float) -> FrameResult:
        """A frame without detection: the last detection frame's faces, moved
        by their tracks' velocities; no votes are added."""
        dt = time - self._held_time
        faces, ids = [], []
        for face, tid in self._held:
            track = self.tracks.get(tid) if tid is not None else None
            if track is not None:
                vx, vy = track.velocity
                face = shifted(face, vx * dt, vy * dt, width, height)
            faces.append(face)
            ids.append(tid)
        return self._tracked(FrameResult(image, width, height, tuple(faces)), ids, detected=False)

    def _tracked(self, result: FrameResult, ids: list[int | None], detected: bool) -> FrameResult:
        tracks = [self.tracks.get(t) if t is not None else None for t in ids]
        extra = {**result.extra, "track_ids": ids,
                 "track_labels": [None if t is None else t.label for t in tracks],
                 "track_confidences": [None if t is None else round(t.confidence, 4) for t in tracks],
                 "detected": detected}
        return replace(result, extra=extra)

    def retire(self) -> list[Track]:
        """Tracks ByteTrack has given up on (gone longer than `lost_seconds`);
        each is returned once and forgotten."""
        alive = {t.tracker_id for t in self.bytetrack.tracks}
        gone = [t for tid, t in self.tracks.items() if tid not in alive]
        for t in gone:
            del self.tracks[t.track_id]
        return gone

    def finish(self) -> list[Track]:
        """All tracks still open (end of the video); the tracker is empty after."""
        done = list(self.tracks.values())
        self.tracks = {}
        self._held = []
        return done
