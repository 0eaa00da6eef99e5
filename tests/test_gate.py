"""Gate mode: which face decides, the window that keeps the verdict steady,
and `maskwatch gate` with the real models on a clip and a live MJPEG stream."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.gate import ALLOW, DENY, NO_FACE, Gate, GateConfig, frame_verdict, pick_face
from maskwatch.types import Face, FrameResult
from video_helpers import MjpegServer, jpeg, kiosk_frames, sigterm_when, write_video

W, H = 640, 480


def face(x1: float, y1: float, x2: float, y2: float, label: str | None = "mask", conf: float = 0.9) -> Face:
    probs = None if label is None else {k: (conf if k == label else (1 - conf) / 2)
                                        for k in ("mask", "no_mask", "incorrect")}
    return Face(box=(x1, y1, x2, y2), score=0.9, label=label, confidence=None if label is None else conf, probs=probs)


def frame(*faces: Face) -> FrameResult:
    return FrameResult("cam", W, H, faces)


def test_the_largest_face_near_the_centre_decides() -> None:
    behind = face(300, 200, 340, 250)  # small, central: someone further back
    front = face(220, 120, 420, 360, "no_mask")
    passing = face(0, 0, 250, 250)  # larger, but off to the side
    assert pick_face([behind, front, passing], W, H, 0.6) is front
    assert pick_face([passing], W, H, 0.6) is None
    assert pick_face([passing], W, H, 1.0) is passing


@pytest.mark.parametrize(("faces", "verdict", "reason"), [
    ((), NO_FACE, "none"),
    ((face(300, 220, 330, 255),), NO_FACE, "small"),  # 30 px < 48: step closer
    ((face(250, 150, 400, 330),), ALLOW, "mask"),
    ((face(250, 150, 400, 330, "no_mask"),), DENY, "no_mask"),
    ((face(250, 150, 400, 330, "incorrect"),), DENY, "incorrect"),
    ((face(250, 150, 400, 330, None),), NO_FACE, "small"),  # not classified: not judged
])
def test_frame_verdict(faces: tuple[Face, ...], verdict: str, reason: str) -> None:
    v = frame_verdict(frame(*faces), GateConfig(), 0.0)
    assert (v.verdict, v.reason) == (verdict, reason)


def test_one_bad_frame_does_not_flip_the_verdict() -> None:
    gate = Gate(GateConfig(window=1.0, agree=0.7, min_frames=3))
    masked, bare = face(250, 150, 400, 330, "mask", 0.95), face(250, 150, 400, 330, "no_mask")
    changes = []
    for i in range(30):  # 10 fps: masked, one frame misread at 1.5 s, then the mask comes off at 2 s
        f = bare if i == 15 or i >= 20 else masked
        changed = gate.update(frame(f), i / 10)
        if changed is not None:
            changes.append((i, changed.verdict))
    assert [v for _, v in changes] == [ALLOW, DENY]
    assert changes[0][0] == 2  # min_frames
    assert 20 < changes[1][0] <= 27  # once 70 % of the last second says deny
    assert gate.current is not None and gate.current.confidence == pytest.approx(0.9)


def test_a_slow_camera_still_gets_a_verdict() -> None:
    gate = Gate(GateConfig(window=1.0, min_frames=3))
    verdicts = [gate.update(frame(face(250, 150, 400, 330)), t) for t in (0.0, 0.7, 1.4)]  # 1.4 fps
    assert verdicts[:2] == [None, None] and verdicts[2] is not None and verdicts[2].verdict == ALLOW


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="agree"):
        GateConfig(agree=0.4)
    with pytest.raises(ValueError, match="centre"):
        GateConfig(centre=0)


def verdicts(stdout: str) -> list[str]:
    return [json.loads(line)["verdict"] for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_gate_command_on_a_kiosk_clip(tmp_path: Path) -> None:
    """Nobody, a masked person, an unmasked one, nobody: the real models say so, in order."""
    clip = write_video(tmp_path / "kiosk.mp4", kiosk_frames(12), fps=10)
    proc = subprocess.run([sys.executable, "-m", "maskwatch.cli", "gate", str(clip), "--no-show"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert verdicts(proc.stdout) == [NO_FACE, ALLOW, DENY, NO_FACE]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[1]["label"] == "mask" and lines[1]["confidence"] > 0.9 and lines[1]["reason"] == "mask worn properly"
    assert lines[2]["label"] == "no_mask" and lines[2]["reason"] == "no mask"
    assert "48 frames" in proc.stderr and "4 verdicts shown" in proc.stderr


@pytest.mark.slow
def test_gate_on_a_live_stream_shows_its_verdict(tmp_path: Path) -> None:
    """A loopback MJPEG camera; the kiosk page, its frame with the verdict band, and state.json."""
    server = MjpegServer([jpeg(f) for f in kiosk_frames(24)], fps=12).start()  # 2 s per scene
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "gate", server.url, "--show-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("live view: http://127.0.0.1:"), first + (proc.stderr.read() if proc.stderr else "")
        url = first.split()[2]
        seen: list[str] = []
        shown: list[np.ndarray] = []

        def two_verdicts() -> bool:  # a deny and an allow, read off the stream; then the kiosk's frame
            line = proc.stdout.readline()
            if line.startswith("{"):
                seen.append(json.loads(line)["verdict"])
            if not {ALLOW, DENY} <= set(seen):
                return False
            data = urllib.request.urlopen(url + "frame.jpg", timeout=10).read()
            shown.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
            return True

        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert 'src="stream.mjpg"' in page and "maskwatch gate" in page
        out, err = sigterm_when(proc, two_verdicts, timeout=90)
    finally:
        server.kill()
    assert {ALLOW, DENY} <= set(seen), err
    assert shown and shown[0].shape == (600, 640, 3)  # the camera's 640x480 and the verdict band
    assert proc.returncode == 128 + 15 and "verdicts shown" in err


def test_banner_keeps_the_frame_and_adds_the_sign() -> None:
    from maskwatch.annotate import VERDICT_COLORS, banner

    rgb = np.full((480, 640, 3), 50, np.uint8)
    out = banner(rgb, "DENY", "no mask", DENY)
    assert out.shape == (600, 640, 3) and np.array_equal(out[:480], rgb)
    assert tuple(out[-3, 5]) == VERDICT_COLORS[DENY]
    assert cv2.imencode(".jpg", out)[0]


@pytest.mark.slow
def test_the_kiosk_page_in_a_browser(browser) -> None:
    """What the kiosk screen shows: Chromium opens the gate's page, the live
    frame (camera + verdict band) plays, the status line follows the verdict,
    and a click makes it full screen."""
    server = MjpegServer([jpeg(f) for f in kiosk_frames(24)], fps=12).start()
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "gate", server.url, "--show-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[2]
        page = browser.new_page()
        page.goto(url)
        status = page.locator("#status")
        for verdict in ("allow: mask worn properly", "deny: no mask"):
            page.wait_for_function("([el, text]) => el.textContent.startsWith(text)",
                                   arg=[status.element_handle(), verdict], timeout=60_000)
        size = page.evaluate("() => { const i = document.getElementById('view'); "
                             "return [i.naturalWidth, i.naturalHeight]; }")
        assert size == [640, 600]
        page.click("#view")
        page.wait_for_function("() => document.fullscreenElement !== null", timeout=10_000)
        page.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
        server.kill()
    assert proc.returncode == 128 + 15
