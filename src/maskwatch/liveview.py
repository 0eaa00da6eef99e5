"""The live window of `maskwatch watch --show` and `maskwatch gate`, in a browser.

maskwatch depends on OpenCV's headless build (the GUI build fights it in one
environment and needs libGL, absent in slim containers), so there is no
`cv2.imshow`. Instead the annotated frames are served as MJPEG on loopback:
any browser on the machine shows http://127.0.0.1:PORT/, a kiosk screen runs
`chromium --kiosk URL`. Frames are JPEG-encoded only while someone watches
(and at most `max_fps` times a second), so an unwatched view costs nothing.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
html, body {{ margin: 0; height: 100%; background: #000; color: #ddd; font: 16px system-ui, sans-serif; }}
img {{ display: block; width: 100vw; height: calc(100vh - 1.6em); object-fit: contain; }}
#status {{ height: 1.6em; line-height: 1.6em; padding: 0 .5em; white-space: nowrap; overflow: hidden; }}
</style></head>
<body><img id="view" src="stream.mjpg" alt="live view of {title}"><div id="status">{title}</div>
<script>
// Click for full screen (a kiosk); the status line follows state.json.
document.body.addEventListener("click", () => document.documentElement.requestFullscreen?.());
async function poll() {{
  try {{
    const s = await (await fetch("state.json", {{cache: "no-store"}})).json();
    document.getElementById("status").textContent = s.status || "";
  }} catch (e) {{ document.getElementById("status").textContent = "maskwatch has stopped"; }}
  setTimeout(poll, 1000);
}}
poll();
</script></body></html>
"""


class LiveView:
    """Serves the newest frame passed to `publish` on http://host:port/
    (page), /stream.mjpg, /frame.jpg and /state.json.

    Example:
        >>> view = LiveView(port=0).start()
        >>> view.publish(lambda: annotated_rgb, {"status": "3 people"})
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, title: str = "maskwatch",
                 max_fps: float = 15.0, quality: int = 80) -> None:
        self.host, self.port, self.title = host, port, title
        self.max_fps, self.quality = max_fps, quality
        self.viewers = 0
        self._draw: Callable[[], np.ndarray] | None = None
        self._state: dict[str, Any] = {}
        self._jpeg: bytes | None = None
        self._seq = 0
        self._encoded_at = 0.0
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> LiveView:
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        except (OSError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise RuntimeError(f"cannot serve the live view on {self.host}:{self.port}: {reason} "
                               "(choose another port)") from exc
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="live view", daemon=True).start()
        return self

    def publish(self, draw: Callable[[], np.ndarray], state: dict[str, Any]) -> None:
        """A new frame: `draw()` returns its annotated RGB image; it is called
        here only while someone watches the stream, else when /frame.jpg asks."""
        with self._cond:
            self._draw, self._state = draw, state
            now = time.monotonic()
            if self.viewers and now - self._encoded_at >= 1 / self.max_fps:
                self._jpeg, self._encoded_at = self._encode(draw()), now
                self._seq += 1
                self._cond.notify_all()

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _encode(self, rgb: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("cannot encode the live frame")
        return data.tobytes()

    def _snapshot(self) -> bytes | None:
        with self._cond:
            if self._draw is None:
                return None
            if self._jpeg is None or not self.viewers:
                self._jpeg = self._encode(self._draw())
            return self._jpeg

    def _stream(self, write: Callable[[bytes], object]) -> None:
        with self._cond:
            self.viewers += 1
        seen = -1
        try:
            while not self._closing.is_set():
                with self._cond:
                    self._cond.wait_for(lambda seen=seen: self._seq != seen or self._closing.is_set(), timeout=1.0)
                    data, fresh = self._jpeg, self._seq != seen
                    seen = self._seq
                if data is not None and fresh:
                    write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                          + data + b"\r\n")
        except OSError:  # the viewer closed the page
            pass
        finally:
            with self._cond:
                self.viewers -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        view = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("live view: " + fmt, *args)

            def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/":
                    page = PAGE.format(title=html.escape(view.title))
                    self._send(page.encode(), "text/html; charset=utf-8")
                elif path == "/state.json":
                    with view._cond:
                        state = dict(view._state)
                    self._send(json.dumps(state).encode(), "application/json")
                elif path == "/frame.jpg":
                    data = view._snapshot()
                    if data is None:
                        self._send(b"no frame yet\n", "text/plain", 503)
                    else:
                        self._send(data, "image/jpeg")
                elif path == "/stream.mjpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    view._stream(self.wfile.write)
                else:
                    self._send(b"not found: try /\n", "text/plain", 404)

        return Handler
