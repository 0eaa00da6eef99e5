"""Frame sources: video files, image sequences, webcams and network streams.

`open_source("clip.mp4")` returns a `FrameSource`; iterating it yields
`Frame`s (index, time, RGB pixels) decoded by a reader thread into a bounded
queue, so decoding overlaps detection on another core.

- Files and image sequences: every frame (or every `stride`-th) is yielded;
  the reader blocks when the queue is full, so nothing is lost.
- Live sources (webcam index such as `0`, http(s)/rtsp URLs, MJPEG over
  HTTP): when the queue is full the oldest frame is dropped and counted, so
  the consumer always works on a recent frame instead of falling behind. A
  stream that ends or breaks is reopened with exponential backoff.

Frames that cannot be decoded are skipped and counted. OpenCV (the headless
build) does the decoding, through its FFmpeg backend.
"""

from __future__ import annotations

import glob
import logging
import math
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from maskwatch.decode import IMAGE_SUFFIXES, DecodeError, decode_file

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ts"})
URL_SCHEMES = ("http://", "https://", "rtsp://", "rtsps://", "rtmp://")


class SourceError(RuntimeError):
    """A source that cannot be opened or yields no frame at all."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    `index` is the frame's position in the source (with a stride of 3 the
    indices are 0, 3, 6, ...); `time` is seconds from the start: the file's
    own clock (index / fps) for files and image sequences, elapsed wall clock
    for live sources. `wall` is the UNIX time the frame was read.
    """

    index: int
    time: float
    rgb: np.ndarray
    wall: float


@dataclass(frozen=True)
class SourceConfig:
    """How frames are read.

    `stride`: yield every stride-th frame of a file (1: all); live sources
    ignore it, dropping stale frames instead. `queue_size`: decoded frames
    kept ahead of the consumer; for files a few frames smooth out decode
    jitter, for live sources it is kept at 1-2 so what is analysed is never
    older than one or two frames. `image_fps`: the clock of an image
    sequence, which has none of its own. `reconnect_delay` doubles after each
    failed attempt up to `reconnect_max_delay`; after `reconnect_attempts`
    failures in a row the source gives up (None: never). `timeout`: seconds
    OpenCV waits to open a stream or for its next frame before it counts as
    dropped (FFmpeg's default is 30 s).
    """

    stride: int = 1
    queue_size: int = 4
    live_queue_size: int = 1
    image_fps: float = 25.0
    reconnect_delay: float = 0.5
    reconnect_max_delay: float = 8.0
    reconnect_attempts: int | None = 20
    timeout: float = 10.0
    max_bad_reads: int = 50
    """Failed reads in a row that end a file: a few may be damaged frames
    with good ones after them; a long run is the end of the file."""

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.queue_size < 1 or self.live_queue_size < 1:
            raise ValueError("queue sizes must be >= 1")


@dataclass(frozen=True)
class SourceSpec:
    """What a source string names: `kind` is file, images, webcam or url."""

    kind: str
    target: str
    paths: tuple[Path, ...] = ()

    @property
    def live(self) -> bool:
        return self.kind in ("webcam", "url")


@dataclass
class SourceStats:
    """Counters the reader thread updates (read by the consumer when it likes).

    `read`: frames decoded; `dropped`: live frames thrown away because the
    consumer was busy; `skipped`: file frames passed over by the stride;
    `corrupt`: frames that could not be decoded; `reconnects`: successful
    reopenings of a live source.
    """

    read: int = 0
    dropped: int = 0
    skipped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    fps: float = 0.0
    frame_count: int | None = None
    width: int = 0
    height: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"read": self.read, "dropped": self.dropped, "skipped": self.skipped, "corrupt": self.corrupt,
                "reconnects": self.reconnects, "fps": round(self.fps, 3), "frame_count": self.frame_count,
                "errors": self.errors}


def public_name(target: str) -> str:
    """`target` with a URL's password masked: the name goes into logs,
    alerts, the event store and the live view, the password must not."""
    parts = urllib.parse.urlsplit(target) if "://" in target else None
    if parts is None or parts.password is None:
        return target
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def parse_source(raw: str) -> SourceSpec:
    """Tell what `raw` names, without opening it.

    A plain integer is a webcam index; a URL scheme marks a stream; a folder
    or a glob pattern is an image sequence (files sorted by name); any other
    existing file is read as a video.
    """
    text = raw.strip()
    if text.isdigit():
        return SourceSpec("webcam", text)
    if text.lower().startswith(URL_SCHEMES):
        return SourceSpec("url", text)
    path = Path(text)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SourceError(f"{raw}: folder holds no images")
        return SourceSpec("images", text, tuple(images))
    if glob.has_magic(text):
        images = sorted(Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SourceError(f"{raw}: pattern matches no images")
        return SourceSpec("images", text, tuple(images))
    if not path.exists():
        raise FileNotFoundError(f"{raw}: no such file, folder, URL or webcam index")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return SourceSpec("images", text, (path,))
    return SourceSpec("file", text)


def backoff_delays(config: SourceConfig) -> Iterator[float]:
    """Seconds to wait before each reconnect attempt: doubling, capped, and
    finite when `reconnect_attempts` is set."""
    attempt = 0
    while config.reconnect_attempts is None or attempt < config.reconnect_attempts:
        yield min(config.reconnect_max_delay, config.reconnect_delay * 2**attempt)
        attempt += 1


def capture_params(config: SourceConfig) -> list[int]:
    ms = int(config.timeout * 1000)
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]


def open_capture(spec: SourceSpec, config: SourceConfig) -> cv2.VideoCapture | None:
    """An opened OpenCV capture, or None when it does not open."""
    if spec.kind == "webcam":
        cap = cv2.VideoCapture(int(spec.target))
    else:
        cap = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, capture_params(config))
    if cap.isOpened():
        return cap
    cap.release()
    return None


def usable(bgr: np.ndarray | None) -> bool:
    return bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3 and bgr.size > 0 and bgr.dtype == np.uint8


_END = object()


class FrameSource:
    """Decodes frames on a reader thread; iterate it to get `Frame`s.

    Use it as a context manager (or call `close`) so the thread and the
    capture are released when the consumer stops early.
    """

    def __init__(self, spec: SourceSpec, config: SourceConfig | None = None) -> None:
        self.spec = spec
        self.config = config or SourceConfig()
        self.stats = SourceStats()
        self.name = public_name(spec.target)
        size = self.config.live_queue_size if spec.live else self.config.queue_size
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._cap: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None
        if spec.kind == "file":
            self._cap = self._open_file()
        elif spec.kind == "images":
            self.stats.fps = self.config.image_fps
            self.stats.frame_count = len(spec.paths)
        self.started = time.time()

    # -- opening -------------------------------------------------------------

    def _open_file(self) -> cv2.VideoCapture:
        path = Path(self.spec.target)
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: empty file")
        cap = open_capture(self.spec, self.config)
        if cap is None:
            raise SourceError(f"{path}: cannot be opened as a video (corrupt, truncated, or not a video file)")
        ok, first = cap.read()
        if not ok or not usable(first):
            cap.release()
            raise SourceError(f"{path}: opened, but no frame could be decoded (corrupt or unsupported codec)")
        self._first = first  # yielded as frame 0: seeking back is not exact for every codec
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.stats.fps = fps if math.isfinite(fps) and 0 < fps < 1000 else 25.0
        if self.stats.fps != fps:
            log.warning("%s: no usable frame rate (%s), assuming 25 fps", path, fps)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.stats.frame_count = count if count > 0 else None
        self.stats.height, self.stats.width = first.shape[:2]
        return cap

    # -- thread control ------------------------------------------------------

    def start(self) -> FrameSource:
        if self._thread is None:
            target = {"file": self._read_file, "images": self._read_images}.get(self.spec.kind, self._read_live)
            self._thread = threading.Thread(target=self._run, args=(target,), name=f"source {self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the reader to stop and the iteration to end soon; does not
        wait (safe in a signal handler). `close` releases everything."""
        self._stop.set()

    def close(self) -> None:
        """Stop the reader and release the capture (safe to call twice)."""
        self._stop.set()
        while True:  # unblock a reader waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout + 1)
        if self._cap is not None and (self._thread is None or not self._thread.is_alive()):
            self._cap.release()

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._error = exc
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(_END, timeout=0.2)
                return
            except queue.Full:
                continue

    def _put_blocking(self, frame: Frame) -> bool:
        """Files: wait for room so every frame is processed; False once stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(frame, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _put_latest(self, frame: Frame) -> None:
        """Live: never wait; drop the oldest queued frame when full."""
        while True:
            try:
                self._queue.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    # -- readers -------------------------------------------------------------

    def _read_file(self) -> None:
        cap, cfg, fps = self._cap, self.config, self.stats.fps
        assert cap is not None
        index, bad = 0, 0
        while not self._stop.is_set():
            keep = index % cfg.stride == 0
            if index == 0 and self._first is not None:
                ok, bgr, self._first = True, self._first, None
            elif keep:
                ok, bgr = cap.read()
            else:
                ok, bgr = cap.grab(), None
            if not ok or (keep and not usable(bgr)):
                bad += 1
                if bad >= cfg.max_bad_reads:
                    break
                index += 1
                continue
            if bad:  # failed reads followed by a good frame were damaged frames, not the end
                self.stats.corrupt += bad
                log.warning("%s: %d frame%s could not be decoded before frame %d", self.name, bad,
                            "s" * (bad != 1), index)
                bad = 0
            if keep:
                self.stats.read += 1
                frame = Frame(index, index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.time())
                if not self._put_blocking(frame):
                    break
            else:
                self.stats.skipped += 1
            index += 1
        if self.stats.read == 0 and not self._stop.is_set():
            raise SourceError(f"{self.name}: no frame could be decoded")

    def _read_images(self) -> None:
        fps = self.config.image_fps
        for index, path in enumerate(self.spec.paths):
            if self._stop.is_set():
                return
            if index % self.config.stride:
                self.stats.skipped += 1
                continue
            try:
                rgb = decode_file(path).upright()
            except (DecodeError, OSError) as exc:
                self.stats.corrupt += 1
                log.warning("%s: skipped: %s", path, exc)
                continue
            self.stats.read += 1
            if not self.stats.width:
                self.stats.height, self.stats.width = rgb.shape[:2]
            if not self._put_blocking(Frame(index, index / fps, rgb, time.time())):
                return
        if self.stats.read == 0:
            raise SourceError(f"{self.name}: none of {len(self.spec.paths)} images could be decoded")

    def _read_live(self) -> None:
        index, bad, first = 0, 0, True
        while not self._stop.is_set():
            cap = self._connect(first)
            if cap is None:
                return
            first = False
            self._cap = cap
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    break
                if not usable(bgr):
                    bad += 1
                    self.stats.corrupt += 1
                    if bad >= self.config.max_bad_reads:
                        break
                    continue
                bad = 0
                now = time.time()
                if not self.stats.width:
                    self.stats.height, self.stats.width = bgr.shape[:2]
                self.stats.read += 1
                self._put_latest(Frame(index, now - self.started, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now))
                index += 1
            cap.release()
            self._cap = None
            if not self._stop.is_set():
                log.warning("%s: stream dropped after frame %d; reconnecting", self.name, index - 1)

    def _connect(self, first: bool) -> cv2.VideoCapture | None:
        """Open the live source, retrying with backoff; None when giving up or stopped."""
        cap = open_capture(self.spec, self.config)
        if cap is not None:
            self._note_opened(cap, first)
            return cap
        if first and self.spec.kind == "webcam":
            raise SourceError(f"webcam {self.spec.target}: cannot be opened")
        for attempt, delay in enumerate(backoff_delays(self.config), start=1):
            log.warning("%s: not reachable; retry %d in %.1f s", self.name, attempt, delay)
            if self._stop.wait(delay):
                return None
            cap = open_capture(self.spec, self.config)
            if cap is not None:
                log.info("%s: opened after %d attempt%s", self.name, attempt, "s" * (attempt != 1))
                self._note_opened(cap, first)
                return cap
        message = f"{self.name}: gave up after {self.config.reconnect_attempts} reconnect attempts"
        self.stats.errors.append(message)
        log.error(message)
        if first:
            raise SourceError(f"{self.name}: cannot be opened")
        return None

    def _note_opened(self, cap: cv2.VideoCapture, first: bool) -> None:
        if not first:
            self.stats.reconnects += 1
        fps = cap.get(cv2.CAP_PROP_FPS)
        if math.isfinite(fps) and 0 < fps < 1000:
            self.stats.fps = fps


def open_source(raw: str, config: SourceConfig | None = None) -> FrameSource:
    """A `FrameSource` for a path, folder, glob, webcam index or URL (not started yet).

    Raises FileNotFoundError for a path that does not exist and SourceError
    for a file that is not a readable video.
    """
    return FrameSource(parse_source(raw), config)
