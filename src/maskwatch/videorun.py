"""Run the pipeline over a video: frames in, annotated MP4 and JSON lines out.

Glue between the stages, used by `maskwatch video` and the benchmark:
`FrameSource` (video.py) -> `Pipeline.faces` -> `FaceTracker` (track.py) ->
annotated MP4 (encode.py), per-frame and per-track JSON lines, and a run
summary (compliance.py); with `Alerting`, tracked frames also go through the
alert rules (alerts.py), each alert is stored with its outbox rows
(store.py) and delivered by a background thread (sinks.py). Whatever stops
the run (end of input, `stop` set by a signal handler, an exception) the
outputs are closed in order: the MP4 is finished by ffmpeg, the open tracks
are written, pending alerts get `flush_seconds` to go out (the rest wait in
the store for the next run), then the summary.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from maskwatch.alerts import AlertConfig, AlertRules
from maskwatch.annotate import FONT, annotate, style
from maskwatch.compliance import plot_compliance, summarize
from maskwatch.encode import EncodeConfig, Mp4Writer
from maskwatch.pipeline import Pipeline
from maskwatch.sinks import DeliveryConfig, Dispatcher, Sink
from maskwatch.store import Store
from maskwatch.track import UNKNOWN, FaceTracker, Track, TrackConfig
from maskwatch.types import Box, FrameResult
from maskwatch.video import FrameSource, SourceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoConfig:
    """`detect_every`: run the detector and classifier on every n-th
    processed frame only; frames in between re-emit the tracked faces moved
    by their tracks' velocities (about n times faster, boxes lag on sudden
    turns). `bucket_seconds`: width of the compliance-over-time buckets."""

    detect_every: int = 1
    bucket_seconds: float = 60.0
    source: SourceConfig = field(default_factory=SourceConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.bucket_seconds <= 0:
            raise ValueError(f"bucket_seconds must be > 0, got {self.bucket_seconds}")


@dataclass(frozen=True)
class VideoOutputs:
    """Where results go; None skips that output (and its cost)."""

    video: Path | None = None
    events: Path | None = None
    tracks: Path | None = None
    summary: Path | None = None

    @property
    def plot(self) -> Path | None:
        return None if self.summary is None else self.summary.with_suffix(".png")


@dataclass(frozen=True)
class Alerting:
    """Alerts for a run: the rules, the event store file, and the sinks each
    alert is delivered to from the store's outbox. `snapshots`: store and
    send a JPEG of the face with each alert (off by default: it is a
    picture of a person)."""

    store: Path
    rules: AlertConfig = field(default_factory=AlertConfig)
    sinks: tuple[Sink, ...] = ()
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    snapshots: bool = False


def face_snapshot(rgb: np.ndarray, box: Box, margin: float = 0.25, quality: int = 85) -> bytes:
    """JPEG of the face box grown by `margin` of its size on each side (hair,
    chin and mask in view), clipped to the frame."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = min(w - 1, max(0, math.floor(x1 - mx))), min(h - 1, max(0, math.floor(y1 - my)))
    right, bottom = min(w, max(left + 1, math.ceil(x2 + mx))), min(h, max(top + 1, math.ceil(y2 + my)))
    crop = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a snapshot of box {box}")
    return data.tobytes()


def display_faces(result: FrameResult) -> list:
    """Faces as the video shows them: coloured by their track's voted label
    (grey until the track has enough evidence), captioned with the vote share."""
    ids = result.extra.get("track_ids") or [None] * len(result.faces)
    labels = result.extra.get("track_labels") or [None] * len(result.faces)
    shares = result.extra.get("track_confidences") or [None] * len(result.faces)
    out = []
    for face, tid, label, share in zip(result.faces, ids, labels, shares, strict=True):
        if tid is None or label in (None, UNKNOWN):
            out.append(replace(face, label=None, confidence=None, probs=None))
        else:
            out.append(replace(face, label=label, confidence=share, probs=None))
    return out


def annotate_frame(rgb: np.ndarray, result: FrameResult) -> np.ndarray:
    """The frame with each face's box and track label, and its track id below the box."""
    out = annotate(rgb, display_faces(result))
    h, w = out.shape[:2]
    thick, font_scale = style(w, h)
    for face, tid in zip(result.faces, result.extra.get("track_ids") or [], strict=False):
        if tid is None:
            continue
        x1, _, _, y2 = (round(v) for v in face.box)
        text = f"#{tid}"
        (tw, th), base = cv2.getTextSize(text, FONT, font_scale, 1)
        tx, ty = min(max(0, x1), max(0, w - tw)), min(h - base - 1, y2 + th + base + 2)
        cv2.putText(out, text, (tx, ty), FONT, font_scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, (tx, ty), FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _open_text(path: Path | None) -> TextIO | None:
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


def _write(fh: TextIO | None, obj: dict[str, Any]) -> None:
    if fh is not None:
        fh.write(json.dumps(obj) + "\n")
        fh.flush()  # a killed run keeps every line written so far


@dataclass
class RunStats:
    """What a run did; `interrupted` when `stop` ended it before the input did."""

    frames: int = 0
    detected: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    tracks: list[Track] = field(default_factory=list)
    alerts: int = 0
    deliveries_pending: int = 0
    """Alert deliveries left in the store's outbox at the end (sent by a later run)."""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run_video(source: FrameSource, pipeline: Pipeline, outputs: VideoOutputs | None = None,
              config: VideoConfig | None = None, progress: Callable[[], None] | None = None,
              stop: threading.Event | None = None, alerting: Alerting | None = None,
              on_frame: Callable[[np.ndarray, FrameResult], None] | None = None) -> tuple[RunStats, dict[str, Any]]:
    """Process every frame `source` yields; returns (stats, summary).

    The summary is also written to `outputs.summary` (with its plot beside
    it) and holds the source's counters (frames read, dropped, corrupt,
    reconnects) and, with `alerting`, the alerts raised. `on_frame(rgb,
    result)` sees each frame with its tracked result (a live view, a gate).
    """
    cfg = config or VideoConfig()
    outputs = outputs or VideoOutputs()
    stop = stop or threading.Event()
    stats = RunStats()
    events_fh, tracks_fh = _open_text(outputs.events), _open_text(outputs.tracks)
    writer: Mp4Writer | None = None
    # Built before the clock starts: importing the tracker library takes ~0.8 s. The frame
    # rate only scales ByteTrack's defaults; it is driven by the frames' timestamps.
    tracker = FaceTracker(cfg.track, fps=source.stats.fps or 25.0)
    alerter = None if alerting is None else AlertRun(alerting, source.name)
    last_time = 0.0
    t0 = time.perf_counter()
    try:
        source.start()
        for frame in source:
            if stop.is_set():
                stats.interrupted = True
                break
            h, w = frame.rgb.shape[:2]
            if stats.frames % cfg.detect_every == 0:
                result = FrameResult(source.name, w, h, tuple(pipeline.faces(frame.rgb)))
                result = tracker.update(result, frame.index, frame.time)
                stats.detected += 1
            else:
                result = tracker.hold(source.name, w, h, frame.time)
            result = with_frame_info(result, frame.index, frame.time, frame.wall if source.spec.live else None)
            _write(events_fh, result.to_dict())
            if alerter is not None:
                stats.alerts += alerter.update(result, frame.rgb, frame.time)
            for track in tracker.retire():
                stats.tracks.append(track)
                _write(tracks_fh, track.to_dict())
            if outputs.video is not None:
                if writer is None:
                    fps = (source.stats.fps or 25.0) / (1 if source.spec.live else source.config.stride)
                    audio = source.spec.target if source.spec.kind == "file" else None
                    writer = Mp4Writer(outputs.video, w, h, fps, audio_from=audio, config=cfg.encode)
                writer.write(annotate_frame(frame.rgb, result))
            if on_frame is not None:
                on_frame(frame.rgb, result)
            stats.frames += 1
            last_time = frame.time
            if progress is not None:
                progress()
        else:
            stats.interrupted = stop.is_set()
    finally:
        source.close()
        stats.seconds = time.perf_counter() - t0
        try:
            if writer is not None:
                writer.close()
            for track in tracker.finish():
                stats.tracks.append(track)
                _write(tracks_fh, track.to_dict())
            for fh in (events_fh, tracks_fh):
                if fh is not None:
                    fh.close()
        finally:
            if alerter is not None:
                stats.deliveries_pending = alerter.close()
    summary = run_summary(source, stats, cfg, last_time)
    if alerting is not None:
        summary["alerts"] = {"raised": stats.alerts, "store": str(alerting.store),
                             "deliveries_pending": stats.deliveries_pending}
    if outputs.summary is not None:
        outputs.summary.parent.mkdir(parents=True, exist_ok=True)
        outputs.summary.write_text(json.dumps(summary, indent=2) + "\n")
        plot_compliance(summary["compliance_over_time"] or [{"start": 0, "people": 0, "compliance": None}],
                        outputs.plot, title=f"Mask compliance: {Path(source.name).name}")
    return stats, summary


class AlertRun:
    """The alert side of a run: rules over each tracked frame; every alert is
    stored with its outbox rows (snapshot cut first, if wanted) before the
    delivery thread is woken, so nothing raised is only in memory."""

    def __init__(self, alerting: Alerting, source: str) -> None:
        self.alerting = alerting
        self.rules = AlertRules(alerting.rules, source=source)
        self.store = Store(alerting.store)
        self.sink_names = [s.name for s in alerting.sinks]
        try:
            self.dispatcher = Dispatcher(alerting.store, alerting.sinks, alerting.delivery).start()
        except BaseException:
            self.store.close()
            raise

    def update(self, result: FrameResult, rgb: np.ndarray, t: float) -> int:
        """Alerts raised by this frame, stored; returns how many."""
        alerts = self.rules.update(result, t)
        for alert in alerts:
            if self.alerting.snapshots and alert.box is not None:
                alert = replace(alert, snapshot=face_snapshot(rgb, alert.box))
            self.store.add(alert, self.sink_names)
            log.info("%s: alert %s: person #%d %s", alert.source, alert.id, alert.track_id, alert.label)
        if alerts:
            self.dispatcher.wake()
        return len(alerts)

    def close(self) -> int:
        """Flush deliveries (up to the delivery config's `flush_seconds`);
        returns the ones left in the outbox."""
        try:
            return self.dispatcher.close()
        finally:
            self.store.close()


def with_frame_info(result: FrameResult, index: int, seconds: float, wall: float | None) -> FrameResult:
    """Frame index and time (and wall clock for live sources) first in `extra`."""
    extra: dict[str, Any] = {"frame": index, "time": round(seconds, 3)}
    if wall is not None:
        extra["wall_time"] = round(wall, 3)
    extra.update(result.extra)
    return replace(result, extra=extra)


def run_summary(source: FrameSource, stats: RunStats, cfg: VideoConfig, duration: float) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "source": source.name,
        "kind": source.spec.kind,
        "frames_processed": stats.frames,
        "frames_detected": stats.detected,
        "duration": round(duration, 3),
        "processing_seconds": round(stats.seconds, 3),
        "processing_fps": round(stats.fps, 2),
        "stride": 1 if source.spec.live else source.config.stride,
        "detect_every": cfg.detect_every,
        "interrupted": stats.interrupted,
        "source_stats": source.stats.to_dict(),
    }
    summary.update(summarize(stats.tracks, cfg.bucket_seconds, duration, cfg.track))
    return summary
