"""Alert rules over tracked people: pure, no I/O.

`AlertRules.update` reads the `FrameResult`s the video loop produces (after
`FaceTracker`: `extra["track_ids"]`, `["track_labels"]`,
`["track_confidences"]`) and returns an `Alert` when a tracked person has
been `no_mask` or `incorrect` for at least `after_seconds` and the vote
behind that label is at least `min_confidence` sure.

Why per track and on the voted label: a single frame's label flickers (a
turned head, motion blur); the track's vote does not, so one person
produces one alert rather than one per frame. A face without a confirmed
track, or a track still `unknown`, never alerts.

Durations are measured on the frame clock (`extra["time"]`: seconds into a
file, elapsed seconds for a live source), so a recording processed slower
or faster than real time alerts at the same moments of the video. The
alert's `first_seen` and `time` are UNIX times from `clock` (injectable,
so tests use a fake one). Storing and delivering alerts is the edges' job
(store.py, sinks.py); so is cutting the face snapshot from the frame.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from maskwatch.track import near
from maskwatch.types import LABELS, Box, FrameResult

FORGET_SECONDS = 10.0
"""A track unseen this long is forgotten unless its cooldown still runs
(ByteTrack itself ends a track after `lost_seconds`, 1 s by default)."""


@dataclass(frozen=True)
class AlertConfig:
    """When a tracked person raises an alert.

    `after_seconds`: how long the person's voted label must have been one of
    `labels` without interruption (0: as soon as the vote says so; longer
    ignores people who pull their mask up after a moment). The clock
    restarts when the vote goes back to `mask` or `unknown`.
    `min_confidence`: share of the track's vote the label needs at alert
    time (0.5-1; higher means fewer false alerts on doubtful faces, later or
    no alerts on them). `cooldown_seconds`: after an alert the same person
    (track) alerts again only when still or again unmasked this much later;
    set it longer than a visit for exactly one alert per person. `labels`:
    the voted labels that count as a violation. `rejoin_seconds`: a tracker
    can lose a person for a moment (a missed detection, someone walking in
    front) and give them a new id; a new track that starts where an alerted
    track vanished less than this long ago is taken as the same person and
    shares its alert and cooldown (0: never).
    """

    after_seconds: float = 3.0
    min_confidence: float = 0.7
    cooldown_seconds: float = 300.0
    labels: tuple[str, ...] = ("no_mask", "incorrect")
    rejoin_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.after_seconds < 0:
            raise ValueError(f"after_seconds must be >= 0, got {self.after_seconds}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.cooldown_seconds < 0 or self.rejoin_seconds < 0:
            raise ValueError(f"cooldown_seconds and rejoin_seconds must be >= 0, got {self.cooldown_seconds}, "
                             f"{self.rejoin_seconds}")
        unknown = set(self.labels) - set(LABELS)
        if not self.labels or unknown:
            raise ValueError(f"labels must be some of {LABELS}, got {self.labels}")


def iso(t: float) -> str:
    """UNIX seconds as an ISO 8601 UTC time with milliseconds."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Alert:
    """One person seen unmasked (or wrongly masked) long enough.

    `id` is unique and travels with every delivery (JSON field and
    `Idempotency-Key` header) so receivers can drop a repeat after a retry.
    `first_seen`, `time`: UNIX times the violation began and the alert was
    raised; `video_time`: seconds into the source at the alert. `box`: the
    face in that frame's pixels. `snapshot`: the face as JPEG bytes, when
    the edge cut one.
    """

    id: str
    source: str
    track_id: int
    label: str
    confidence: float
    first_seen: float
    time: float
    video_time: float = 0.0
    box: Box | None = None
    snapshot: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        if not 0 <= self.confidence <= 1:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form every sink sends; the snapshot as base64 JPEG when present."""
        out: dict[str, Any] = {
            "id": self.id, "source": self.source, "track_id": self.track_id, "label": self.label,
            "confidence": round(self.confidence, 4), "first_seen": iso(self.first_seen), "time": iso(self.time),
            "video_time": round(self.video_time, 3),
            "box": None if self.box is None else [round(float(v), 1) for v in self.box],
        }
        if self.snapshot is not None:
            out["snapshot_jpeg"] = base64.b64encode(self.snapshot).decode("ascii")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        box = d.get("box")
        snap = d.get("snapshot_jpeg")
        return cls(id=d["id"], source=d["source"], track_id=int(d["track_id"]), label=d["label"],
                   confidence=float(d["confidence"]), first_seen=from_iso(d["first_seen"]),
                   time=from_iso(d["time"]), video_time=float(d.get("video_time", 0.0)),
                   box=None if box is None else tuple(float(v) for v in box),  # type: ignore[arg-type]
                   snapshot=None if snap is None else base64.b64decode(snap))


@dataclass
class _TrackState:
    """What the rules remember about one track (frame-clock seconds)."""

    last_seen: float
    box: Box
    since: float | None = None
    """Frame time the current violation began; None while the person is fine."""
    since_wall: float = 0.0
    last_alert: float | None = None


class AlertRules:
    """Turns tracked frames into alerts for one source.

    Example:
        >>> rules = AlertRules(AlertConfig(after_seconds=2), source="door")
        >>> alerts = rules.update(tracker.update(result, frame=i, time=t), t)
    """

    def __init__(self, config: AlertConfig | None = None, source: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config or AlertConfig()
        self.source = source
        self.clock = clock
        self._tracks: dict[int, _TrackState] = {}

    def update(self, result: FrameResult, t: float | None = None) -> list[Alert]:
        """Alerts raised by this frame; `t` defaults to `result.extra["time"]`."""
        now = float(result.extra.get("time", 0.0)) if t is None else t
        cfg = self.config
        n = len(result.faces)
        ids = result.extra.get("track_ids") or [None] * n
        labels = result.extra.get("track_labels") or [None] * n
        shares = result.extra.get("track_confidences") or [None] * n
        alerts = []
        for face, tid, label, share in zip(result.faces, ids, labels, shares, strict=True):
            if tid is None:
                continue
            state = self._tracks.get(tid) or self._new_track(tid, face.box, now)
            state.last_seen, state.box = now, face.box
            if label not in cfg.labels:
                state.since = None
                continue
            if state.since is None:
                state.since, state.since_wall = now, self.clock()
            cooled = state.last_alert is None or now - state.last_alert >= cfg.cooldown_seconds
            if now - state.since >= cfg.after_seconds and (share or 0.0) >= cfg.min_confidence and cooled:
                state.last_alert = now
                alerts.append(Alert(id=uuid.uuid4().hex, source=self.source, track_id=int(tid), label=label,
                                    confidence=float(share), first_seen=state.since_wall, time=self.clock(),
                                    video_time=now, box=face.box))
        self._forget(now)
        return alerts

    def _new_track(self, tid: int, box: Box, now: float) -> _TrackState:
        """A new track's state; it inherits the alert of an alerted track that
        vanished where it appears, moments ago (the same person, re-tracked)."""
        state = _TrackState(last_seen=now, box=box)
        lost = [s for s in self._tracks.values() if s.last_alert is not None and s.last_seen < now
                and now - s.last_seen <= self.config.rejoin_seconds and near(s.box, box)]
        if lost:
            previous = max(lost, key=lambda s: s.last_seen)
            state.since, state.since_wall, state.last_alert = previous.since, previous.since_wall, previous.last_alert
            previous.last_seen = -float("inf")  # one successor only; forgotten once its cooldown ends
        self._tracks[tid] = state
        return state

    def _forget(self, now: float) -> None:
        cooldown = self.config.cooldown_seconds
        gone = [tid for tid, s in self._tracks.items() if now - s.last_seen > FORGET_SECONDS
                and (s.last_alert is None or now - s.last_alert >= cooldown)]
        for tid in gone:
            del self._tracks[tid]

    @property
    def tracked(self) -> int:
        """Tracks remembered now (bounded: old ones are forgotten)."""
        return len(self._tracks)
