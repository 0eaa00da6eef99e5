"""`maskwatch video` end to end: real detector, classifier and tracker on videos built from the example photos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from maskwatch.cli import main
from maskwatch.encode import frame_count, probe
from video_helpers import PAN_FRAMES, sigterm_when, write_video

N = PAN_FRAMES  # frames of the `clip` / `mp4` fixtures (conftest.py)


def test_cli_reports_a_corrupt_video(tmp_path: Path, capsys) -> None:
    path = tmp_path / "broken.avi"
    path.write_bytes(b"RIFF" + os.urandom(4000))
    assert main(["video", str(path), "--events", str(tmp_path / "e.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "broken.avi" in err and "cannot be opened as a video" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_video_writes_every_output(mp4: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["video", str(mp4), "--out", str(out / "x.mp4"), "--events", str(out / "events.jsonl"),
                 "--summary", str(out / "summary.json")])
    assert code == 0
    assert "12 frames" in capsys.readouterr().out
    assert probe(out / "x.mp4")["codec"] == "h264" and frame_count(out / "x.mp4") == N
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(N))
    assert all(len(d["track_ids"]) == len(d["faces"]) for d in lines)
    assert {"image", "width", "height", "faces", "time"} <= set(lines[0])
    assert lines[0]["faces"][0].keys() >= {"box", "score", "landmarks", "label", "confidence", "probs"}
    tracks = [json.loads(line) for line in (out / "events.tracks.jsonl").read_text().splitlines()]
    assert len(tracks) >= 6
    assert tracks[0].keys() >= {"track_id", "first_time", "last_time", "frames", "label", "confidence"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == N and summary["people"] == len(tracks)
    assert 0.5 <= summary["compliance"] <= 1.0
    assert (out / "summary.png").stat().st_size > 5000


@pytest.mark.slow
def test_cli_video_stride_halves_frames_and_keeps_duration(mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    assert main(["video", str(mp4), "--out", str(out), "--stride", "2"]) == 0
    meta = probe(out)
    assert frame_count(out) == N // 2 and meta["fps"] == pytest.approx(12.5)


@pytest.mark.slow
def test_sigterm_flushes_outputs_and_leaves_a_playable_mp4(clip, tmp_path: Path) -> None:
    long_video = write_video(tmp_path / "long.mp4", clip.frames * 40)  # 480 frames: longer than the test waits
    out, events = tmp_path / "x.mp4", tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "video", str(long_video), "--out", str(out),
                             "--events", str(events), "--summary", str(tmp_path / "summary.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = sigterm_when(proc, lambda: events.exists() and len(events.read_text().splitlines()) >= 5)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    written = len(events.read_text().splitlines())
    assert 5 <= written < len(clip.frames) * 40
    assert probe(out)["codec"] == "h264" and frame_count(out) == written
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["frames_processed"] == written
