"""Test videos built from the committed example photos, and a tiny MJPEG-over-HTTP server.

A photo is scaled onto a grey 640x480 canvas (so the detector makes one
pass, as on a camera frame) and moved a few pixels per frame: its faces move
and the annotated boxes in examples/examples.json, scaled and shifted the
same way, say where each one is in every frame.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from maskwatch.decode import decode_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENTRIES = {e["image"]: e for e in json.loads((EXAMPLES / "examples.json").read_text())}
PAN_FRAMES = 12
"""Length of the shared `clip` / `mp4` test fixtures."""


@dataclass(frozen=True)
class Clip:
    """Frames of a panned photo and where its annotated faces are in each."""

    frames: list[np.ndarray]
    boxes: list[list[tuple[float, float, float, float]]]
    labels: list[str]


def pan(name: str = "maksssksksss787.png", n: int = 20, size: tuple[int, int] = (640, 480),
        scale: float = 1.3, step: tuple[int, int] = (4, 2)) -> Clip:
    photo = decode_file(EXAMPLES / name).pixels
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    w, h = size
    frames, boxes = [], []
    for i in range(n):
        x, y = 10 + i * step[0], 20 + i * step[1]
        canvas = np.full((h, w, 3), 127, np.uint8)
        part = small[: h - y, : w - x]
        canvas[y : y + part.shape[0], x : x + part.shape[1]] = part
        frames.append(canvas)
        boxes.append([(b[0] * scale + x, b[1] * scale + y, b[2] * scale + x, b[3] * scale + y)
                      for b in (f["box"] for f in ENTRIES[name]["faces"])])
    return Clip(frames, boxes, [f["label"] for f in ENTRIES[name]["faces"]])


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


class MjpegServer:
    """Serves `frames` as multipart/x-mixed-replace on 127.0.0.1, looping, at `fps`.

    `kill` closes the socket and every open stream, as a camera that goes
    away; `restart` listens again on the same port. Each stream is bounded
    (`max_frames`) so nothing runs on if a test forgets to stop it.
    """

    def __init__(self, frames: list[bytes], fps: float = 50.0, max_frames: int = 3000) -> None:
        self.frames, self.fps, self.max_frames = frames, fps, max_frames
        self.port = 0
        self.served = 0
        self._alive = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(owner.max_frames):
                    if not owner._alive.is_set():
                        return
                    data = owner.frames[i % len(owner.frames)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(data) + data + b"\r\n")
                    except OSError:
                        return
                    owner.served += 1
                    time.sleep(1 / owner.fps)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._alive.set()
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def kill(self) -> None:
        self._alive.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def restart(self) -> MjpegServer:
        return self.start()


def sigterm_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 60) -> tuple[str, str]:
    """Wait (at most `timeout` s) until `ready()`, then SIGTERM `proc` and collect its output;
    the process is killed if it outlives the test."""
    try:
        deadline = time.monotonic() + timeout
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def portrait(name: str, face: int, size: tuple[int, int] = (640, 480), scale: float = 2.2) -> np.ndarray:
    """One annotated face of an example photo, cut out with a margin and
    scaled into the middle of a grey frame: a person in front of a kiosk."""
    photo = decode_file(EXAMPLES / name).pixels
    x1, y1, x2, y2 = ENTRIES[name]["faces"][face]["box"]
    mx, my = (x2 - x1) * 0.6, (y2 - y1) * 0.6
    left, top = max(0, round(x1 - mx)), max(0, round(y1 - my))
    cut = photo[top : round(y2 + my), left : round(x2 + mx)]
    cut = cv2.resize(cut, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    w, h = size
    canvas = np.full((h, w, 3), 127, np.uint8)
    ch, cw = min(h, cut.shape[0]), min(w, cut.shape[1])
    y, x = (h - ch) // 2, (w - cw) // 2
    canvas[y : y + ch, x : x + cw] = cut[:ch, :cw]
    return canvas


def kiosk_frames(per_scene: int = 12) -> list[np.ndarray]:
    """Nobody, a person with a mask, a person without one, nobody again."""
    empty = np.full((480, 640, 3), 127, np.uint8)
    masked, bare = portrait("maksssksksss83.png", 1), portrait("maksssksksss83.png", 2)
    return [empty] * per_scene + [masked] * per_scene + [bare] * per_scene + [empty] * per_scene
