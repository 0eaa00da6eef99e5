"""Live cameras: each one runs the part-3 video pipeline on its own thread.

`CameraManager` keeps the list in `cameras.json` in the data folder (written
atomically, so a restart brings every camera back) and one `Camera` per
entry. A camera's thread runs `run_video` on the stream with tracking and
alert rules (alerts go to the shared SQLite event store, with the camera id
as their `source`); its `on_frame` hook keeps what the API shows: the latest
annotated JPEG (encoded at most `stream_fps` times a second), frame and fps
counters, the faces in view and per-bucket compliance. A stream that cannot
be opened is retried with backoff until the camera is deleted.

Sources come from requests, so they are checked first (`check_source`):
only http(s)/rtsp(s) URLs with a host, or a webcam index when allowed; never
a file path or a file:// URL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from maskwatch.alerts import AlertConfig
from maskwatch.compliance import bucket_row
from maskwatch.pipeline import Pipeline, PipelineConfig
from maskwatch.server.imaging import encode_jpeg
from maskwatch.sinks import make_sinks
from maskwatch.track import UNKNOWN
from maskwatch.types import LABELS, FrameResult
from maskwatch.video import SourceConfig, open_source, public_name
from maskwatch.videorun import Alerting, VideoConfig, annotate_frame, run_video

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "rtsp", "rtsps")


class CameraError(ValueError):
    """A camera request that cannot be honoured; `status` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_source(url: str, allow_webcams: bool) -> str:
    """The source string if it is acceptable from a request, else CameraError (422)."""
    text = url.strip()
    if text.isdigit():
        if not allow_webcams:
            raise CameraError(422, "url: webcam indexes are turned off on this server (MASKWATCH_ALLOW_WEBCAMS)")
        if int(text) > 63:
            raise CameraError(422, f"url: webcam index {text} is out of range 0-63")
        return str(int(text))
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise CameraError(422, "url: must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise CameraError(422, f"url: not a valid URL ({exc})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise CameraError(422, f"url: scheme {parts.scheme or '(none)'!r} not allowed: give an http, https, rtsp "
                               "or rtsps URL, or a webcam index; files and local paths are never accepted")
    try:
        parts.port  # noqa: B018 (reading it validates it: a port out of range raises)
    except ValueError as exc:
        raise CameraError(422, f"url: {exc}") from None
    if not parts.hostname:
        raise CameraError(422, "url: has no host")
    return text


@dataclass(frozen=True)
class CameraSpec:
    """A camera as stored in cameras.json and created by POST /v1/cameras."""

    id: str
    name: str
    url: str
    detect_every: int = 2
    alert_after: float = 3.0
    alert_confidence: float = 0.7
    alert_cooldown: float = 300.0
    created: float = field(default_factory=time.time)


@dataclass
class Bucket:
    start: float
    people: dict[int, str] = field(default_factory=dict)
    """Track id -> its latest voted label in this bucket."""

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((*LABELS, UNKNOWN), 0)
        for label in self.people.values():
            out[label] = out.get(label, 0) + 1
        return out


class Camera:
    """One camera's thread and live state (read by the API from other threads)."""

    def __init__(self, spec: CameraSpec, pipeline_config: PipelineConfig, store: Path, snapshots: bool,
                 stream_fps: float, bucket_seconds: float, history: int, webhooks: tuple[str, ...] = ()) -> None:
        self.spec = spec
        self.webhooks = webhooks
        self.pipeline_config = pipeline_config
        self.store = store
        self.snapshots = snapshots
        self.stream_interval = 1.0 / stream_fps
        self.bucket_seconds = bucket_seconds
        self.stop = threading.Event()
        self.status = "starting"
        self.error: str | None = None
        self.frames = 0
        self.fps = 0.0
        self.last_frame: float | None = None
        self.in_view: dict[str, int] = dict.fromkeys((*LABELS, UNKNOWN), 0)
        self.history: deque[Bucket] = deque(maxlen=history)
        self.jpeg: bytes | None = None
        self.jpeg_seq = 0
        self._last_encode = 0.0
        self._interval: float | None = None
        self._state = threading.Lock()
        self._source = None
        self._thread: threading.Thread | None = None

    # -- thread --------------------------------------------------------------

    def start(self) -> Camera:
        self._thread = threading.Thread(target=self._run, name=f"camera {self.spec.id}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 15.0) -> None:
        """Stop the stream; the thread finishes its outputs (alerts flushed) and ends."""
        self.stop.set()
        source = self._source
        if source is not None:
            source.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        spec = self.spec
        try:
            pipeline = Pipeline(self.pipeline_config)
        except Exception as exc:  # a broken model install: say so on the camera, keep the server up
            self.status, self.error = "error", f"cannot load the models: {exc}"
            log.exception("camera %s: cannot load the models", spec.id)
            return
        rules = AlertConfig(after_seconds=spec.alert_after, min_confidence=spec.alert_confidence,
                            cooldown_seconds=spec.alert_cooldown)
        sinks = tuple(make_sinks(webhooks=self.webhooks))  # the log, and each webhook, fed from the store's outbox
        alerting = Alerting(store=self.store, rules=rules, sinks=sinks, snapshots=self.snapshots)
        config = VideoConfig(detect_every=spec.detect_every,
                             source=SourceConfig(reconnect_attempts=None, reconnect_max_delay=10.0, timeout=5.0))
        failures = 0
        while not self.stop.is_set():
            self.status = "connecting"
            try:
                source = open_source(spec.url, config.source)
                source.name = spec.id  # alerts are filed under the camera id (the URL may hold a password)
                self._source = source
                if self.stop.is_set():
                    source.close()
                    break
                run_video(source, pipeline, None, config, stop=self.stop, alerting=alerting,
                          on_frame=self._on_frame)
                failures = 0
            except Exception as exc:  # the stream, not the server: retry later
                failures += 1
                self.status, self.error = "error", str(exc) or type(exc).__name__
                log.warning("camera %s (%s): %s", spec.id, public_name(spec.url), self.error)
            finally:
                self._source = None
            self.stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
        self.status = "stopped"

    def _on_frame(self, rgb: np.ndarray, result: FrameResult) -> None:
        now = time.time()
        if self.last_frame is not None:  # a running mean of the frame interval (frames arrive in bursts)
            dt = now - self.last_frame
            self._interval = dt if self._interval is None else 0.9 * self._interval + 0.1 * dt
            self.fps = 1.0 / max(1e-3, self._interval)
        self.last_frame = now
        self.frames += 1
        self.status, self.error = "live", None
        labels = result.extra.get("track_labels") or [None] * len(result.faces)
        ids = result.extra.get("track_ids") or [None] * len(result.faces)
        in_view = dict.fromkeys((*LABELS, UNKNOWN), 0)
        start = math.floor(now / self.bucket_seconds) * self.bucket_seconds
        with self._state:
            if not self.history or self.history[-1].start != start:
                self.history.append(Bucket(start))
            bucket = self.history[-1]
            for tid, label in zip(ids, labels, strict=True):
                key = label if label in LABELS else UNKNOWN
                in_view[key] += 1
                if tid is not None:
                    bucket.people[int(tid)] = key
            self.in_view = in_view
        if now - self._last_encode >= self.stream_interval:
            self._last_encode = now
            jpeg = encode_jpeg(annotate_frame(rgb, result), quality=80)
            self.jpeg = jpeg  # the frame first, then its number: a reader that sees the number has the frame
            self.jpeg_seq += 1

    # -- views ---------------------------------------------------------------

    def compliance_history(self) -> list[dict[str, Any]]:
        with self._state:
            buckets = [(b.start, b.counts()) for b in self.history]
        return [bucket_row(start, counts) for start, counts in buckets]

    def view(self) -> dict[str, Any]:
        """The camera as the API shows it (JSON-ready)."""
        stale = self.last_frame is not None and time.time() - self.last_frame > 10
        status = "stalled" if self.status == "live" and stale else self.status
        history = self.compliance_history()
        current = history[-1]["compliance"] if history else None
        d = asdict(self.spec)
        d["url"] = public_name(self.spec.url)
        d.update(status=status, error=self.error, frames=self.frames, fps=round(self.fps, 2),
                 last_frame=self.last_frame, in_view=dict(self.in_view), compliance=current, history=history)
        return d


class CameraManager:
    """The cameras the server runs, persisted in `<data_dir>/cameras.json`."""

    def __init__(self, data_dir: Path, store: Path, pipeline_config: PipelineConfig, *, snapshots: bool = False,
                 stream_fps: float = 10.0, bucket_seconds: float = 60.0, history: int = 60,
                 max_cameras: int = 16, allow_webcams: bool = True, webhooks: tuple[str, ...] = ()) -> None:
        self.path = data_dir / "cameras.json"
        self.store = store
        self.pipeline_config = replace(pipeline_config, threads=1,
                                       detector=replace(pipeline_config.detector, thorough=False))
        self.options = {"snapshots": snapshots, "stream_fps": stream_fps, "bucket_seconds": bucket_seconds,
                        "history": history, "webhooks": webhooks}
        self.max_cameras = max_cameras
        self.allow_webcams = allow_webcams
        self.cameras: dict[str, Camera] = {}
        self._lock = threading.Lock()

    def load(self) -> CameraManager:
        """Start every camera saved by an earlier run."""
        if not self.path.is_file():
            return self
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
            specs = [CameraSpec(**e) for e in entries]
        except (ValueError, TypeError) as exc:
            raise RuntimeError(f"{self.path}: not a camera list written by maskwatch ({exc}); fix or remove it"
                               ) from None
        for spec in specs:
            self.cameras[spec.id] = self._camera(spec).start()
        log.info("started %d saved camera%s", len(specs), "s" * (len(specs) != 1))
        return self

    def _camera(self, spec: CameraSpec) -> Camera:
        return Camera(spec, self.pipeline_config, self.store, **self.options)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps([asdict(c.spec) for c in self.cameras.values()], indent=2) + "\n",
                       encoding="utf-8")
        tmp.chmod(0o600)  # camera URLs may carry passwords
        os.replace(tmp, self.path)

    def add(self, name: str, url: str, **options: Any) -> Camera:
        source = check_source(url, self.allow_webcams)
        with self._lock:
            if len(self.cameras) >= self.max_cameras:
                raise CameraError(409, f"this server runs at most {self.max_cameras} cameras "
                                       "(MASKWATCH_MAX_CAMERAS); delete one first")
            if any(c.spec.url == source for c in self.cameras.values()):
                raise CameraError(409, "url: a camera with this source already exists")
            spec = CameraSpec(id=uuid.uuid4().hex[:12], name=name, url=source, **options)
            camera = self._camera(spec)
            self.cameras[spec.id] = camera
            self._save()
        log.info("camera %s added: %s (%s)", spec.id, name, public_name(source))
        return camera.start()

    def get(self, camera_id: str) -> Camera | None:
        return self.cameras.get(camera_id)

    def remove(self, camera_id: str) -> bool:
        with self._lock:
            camera = self.cameras.pop(camera_id, None)
            if camera is None:
                return False
            self._save()
        threading.Thread(target=camera.close, name=f"closing camera {camera_id}", daemon=True).start()
        log.info("camera %s deleted", camera_id)
        return True

    def close(self) -> None:
        """Stop every camera (the list on disk stays: they come back on the next start)."""
        cameras = list(self.cameras.values())
        for c in cameras:
            c.stop.set()
            if c._source is not None:
                c._source.request_stop()
        for c in cameras:
            c.close()
