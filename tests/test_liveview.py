"""The browser live view: a real HTTP server on loopback, and `maskwatch watch
--show` end to end on a loopback MJPEG camera with a webhook for alerts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.liveview import LiveView
from maskwatch.store import Store
from video_helpers import MjpegServer, jpeg, pan, sigterm_when
from webhook_helpers import Receiver


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def read_mjpeg_frame(url: str) -> np.ndarray:
    """The first JPEG part of a multipart/x-mixed-replace stream."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        length = 0
        while True:
            line = r.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            elif line == b"\r\n" and length:
                return cv2.imdecode(np.frombuffer(r.read(length), np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture
def view():
    v = LiveView(port=0, title="door <1>").start()
    yield v
    v.close()


def test_serves_page_state_and_frames(view: LiveView) -> None:
    status, page = get(view.url)
    assert status == 200 and b"door &lt;1&gt;" in page  # the source name is escaped
    assert get(view.url + "frame.jpg")[0] == 503  # nothing published yet
    assert get(view.url + "nope")[0] == 404

    drawn = []
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255

    def draw() -> np.ndarray:
        drawn.append(1)
        return red

    view.publish(draw, {"status": "1 face"})
    assert drawn == []  # nobody watches: nothing encoded
    assert json.loads(get(view.url + "state.json")[1]) == {"status": "1 face"}
    status, data = get(view.url + "frame.jpg")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and bgr.shape == (48, 64, 3) and bgr[..., 2].mean() > 200  # red stays red

    stop = threading.Event()

    def publisher() -> None:
        while not stop.is_set():
            view.publish(draw, {"status": "1 face"})
            time.sleep(0.02)

    t = threading.Thread(target=publisher)
    t.start()
    try:
        frame = read_mjpeg_frame(view.url + "stream.mjpg")
    finally:
        stop.set()
        t.join()
    assert frame.shape == (48, 64, 3)
    deadline = time.monotonic() + 5
    while view.viewers and time.monotonic() < deadline:  # the closed stream is noticed
        view.publish(draw, {})
        time.sleep(0.05)
    assert view.viewers == 0


def test_a_taken_port_is_a_clear_error(view: LiveView) -> None:
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{view.port}.*another port"):
        LiveView(port=view.port).start()


@pytest.mark.slow
def test_watch_a_live_camera_with_alerts_and_the_live_view(tmp_path: Path) -> None:
    """`maskwatch watch URL --alert-webhook URL --show` as a user runs it: a
    loopback MJPEG camera showing two unmasked people among masked ones."""
    camera = MjpegServer([jpeg(f) for f in pan(n=20).frames], fps=10).start()
    hook = Receiver().start()
    store = tmp_path / "events.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "watch", camera.url, "--show", "--show-port", "0",
                             "--alert-webhook", hook.url, "--alert-after", "0.5", "--store", str(store),
                             "--status-every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("live view: http://127.0.0.1:"), first
        url = first.split()[2]
        second = proc.stdout.readline()  # read here: communicate() skips what readline() buffered
        frame = read_mjpeg_frame(url + "stream.mjpg")
        out, err = sigterm_when(proc, lambda: len(hook.accepted) >= 2, timeout=90)
    finally:
        camera.kill()
        hook.stop()
    assert frame.shape == (480, 640, 3)
    assert second.startswith(f"watching {camera.url}") and "alerts: " in out, err
    assert "people seen" in err  # the status line
    assert proc.returncode == 128 + 15
    with Store(store) as db:
        alerts = db.query()
    assert {a.alert.label for a in alerts} <= {"no_mask", "incorrect"} and len(alerts) >= 2
    assert {a.alert.id for a in alerts} == set(hook.keys)  # each stored alert arrived, once


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_bad_port_is_refused_by_name(port: str, capsys) -> None:
    from maskwatch.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["gate", "clip.mp4", "--show-port", port])
    assert exit_.value.code == 2 and "--show-port" in capsys.readouterr().err


def test_a_port_out_of_range_is_a_clear_error_in_the_library() -> None:
    with pytest.raises(RuntimeError, match="cannot serve the live view on 127.0.0.1:70000"):
        LiveView(port=70000).start()
