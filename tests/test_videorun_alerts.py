"""Alerts end to end: `maskwatch video` with the real detector, classifier and
tracker on a panned example photo, alerts stored in SQLite and delivered to
a local webhook, then listed by `maskwatch events`."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.cli import main
from maskwatch.evaluate import iou
from maskwatch.store import Store
from video_helpers import pan, sigterm_when, write_video
from webhook_helpers import Receiver

N = 12
FPS = 25.0


@pytest.fixture
def hook():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_video_alerts_are_stored_and_delivered_once(tmp_path: Path, hook: Receiver, capsys) -> None:
    clip = pan("maksssksksss787.png", n=N)  # 6 masked people, 2 unmasked
    mp4 = write_video(tmp_path / "pan.mp4", clip.frames, fps=FPS)
    store, lines = tmp_path / "events.sqlite", tmp_path / "alerts.jsonl"
    code = main(["video", str(mp4), "--events", str(tmp_path / "frames.jsonl"), "--alert-after", "0",
                 "--alert-confidence", "0.3", "--alert-webhook", hook.url, "--alert-file", str(lines),
                 "--alert-snapshot", "--store", str(store)])
    out = capsys.readouterr().out
    assert code == 0, out

    with Store(store) as db:
        events = db.query()
        assert db.pending() == {}
    assert events, out
    assert f"alerts: {len(events)} raised, stored in {store}" in out
    unmasked = [k for k, label in enumerate(clip.labels) if label != "mask"]
    for e in events:
        a = e.alert
        assert a.label in ("no_mask", "incorrect") and a.source == str(mp4)
        assert e.delivered == len(e.deliveries) == 3  # log, webhook, file
        boxes = clip.boxes[round(a.video_time * FPS)]  # where the annotated faces are in that frame
        assert max(iou(a.box, boxes[k]) for k in unmasked) >= 0.4  # the alert is about an unmasked person
        snapshot = cv2.imdecode(np.frombuffer(a.snapshot, np.uint8), cv2.IMREAD_COLOR)
        assert snapshot is not None and min(snapshot.shape[:2]) >= 20
    assert len({e.alert.track_id for e in events}) == len(events)  # one alert per person

    ids = sorted(e.alert.id for e in events)
    assert sorted(hook.keys) == ids and len(hook.requests) == len(ids)  # every alert once, keyed by its id
    assert base64.b64decode(hook.accepted[0]["snapshot_jpeg"])[:2] == b"\xff\xd8"
    assert sorted(json.loads(line)["id"] for line in lines.read_text().splitlines()) == ids

    assert main(["events", "--store", str(store), "--since", "5m", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(d["id"] for d in listed) == ids and all(d["snapshot"] for d in listed)


def test_video_without_alert_options_writes_no_store(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    mp4 = write_video(tmp_path / "pan.mp4", pan(n=3).frames, fps=FPS)
    assert main(["video", str(mp4), "--events", "frames.jsonl"]) == 0
    assert not list(tmp_path.glob("*.sqlite"))


@pytest.mark.parametrize(("box", "shape"), [
    ((100, 50, 140, 100), (76, 60)),  # grown by a quarter of the box on each side
    ((-5, 440, 30, 479.5), (50, 39)),  # clipped at the frame's edges
    ((639, 479, 639, 479), (1, 1)),  # a degenerate box still gives a pixel
    ((700, 500, 720, 520), (1, 1)),  # and so does a box outside the frame
])
def test_face_snapshot_is_a_jpeg_of_the_grown_box(box, shape: tuple[int, int]) -> None:
    from maskwatch.videorun import face_snapshot

    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, :, 0] = 200  # red, to check the channel order
    jpeg = face_snapshot(rgb, box)
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert bgr.shape[:2] == shape and bgr[..., 2].mean() > 150 > bgr[..., 0].mean() + 100


def test_sigterm_keeps_undelivered_alerts_for_the_next_run(tmp_path: Path) -> None:
    hook = Receiver(failures=10**6).start()  # the webhook is down for the whole first run
    try:
        clip = pan("maksssksksss787.png", n=N)
        long_video = write_video(tmp_path / "long.mp4", clip.frames * 40, fps=FPS)  # longer than the test waits
        store = tmp_path / "events.sqlite"
        alert_args = ["--alert-after", "0", "--alert-confidence", "0.3", "--alert-webhook", hook.url,
                      "--store", str(store)]
        proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "video", str(long_video), *alert_args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = sigterm_when(proc, lambda: bool(hook.requests))  # once an alert was stored and tried
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "Traceback" not in err and "deliveries pending" in out
        with Store(store) as db:
            left = sorted(e.alert.id for e in db.query() if e.delivered < len(e.deliveries))
        assert left and hook.keys == []

        hook.failures = 0  # the webhook is back; the next run (any video, the same sinks) sends the backlog
        short = write_video(tmp_path / "short.mp4", pan("maksssksksss83.png", n=2).frames, fps=FPS)
        assert main(["video", str(short), *alert_args]) == 0
        assert sorted(hook.keys) == left  # each once
        with Store(store) as db:
            assert db.pending() == {}
    finally:
        hook.stop()
