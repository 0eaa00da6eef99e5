"""Frames per second of `maskwatch video` on 640x480 and 1920x1080 videos.

    python benchmarks/video_fps.py [--frames 150]

The videos are built from the committed example photos (a photo scaled to
90 % of the frame, panning a few pixels per frame so the tracker has work),
written with OpenCV's mp4v codec to a temporary folder. Each case runs the
whole video path: the reader thread decoding the file, detection and
classification, tracking, per-frame JSON lines; "+mp4" adds drawing and
H.264 encoding of the annotated video. Detection on every frame, then with
`--detect-every 3`. The load average printed first tells whether something
else was using the cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from maskwatch.decode import decode_file
from maskwatch.pipeline import Pipeline
from maskwatch.video import open_source
from maskwatch.videorun import VideoConfig, VideoOutputs, run_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = {
    "640x480": ("maksssksksss83.png", 640, 480),
    "1920x1080": ("maksssksksss487.png", 1920, 1080),
}


def make_video(path: Path, photo: Path, width: int, height: int, frames: int) -> Path:
    rgb = decode_file(photo).pixels
    scale = 0.9 * min(width / rgb.shape[1], height / rgb.shape[0])
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    room_x, room_y = width - small.shape[1], height - small.shape[0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    for i in range(frames):
        phase = 0.5 + 0.5 * np.sin(i / 20)
        x, y = round(room_x * phase), round(room_y * (1 - phase))
        canvas = np.full((height, width, 3), 127, np.uint8)
        canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150, help="frames per 640x480 video (1080p gets a third)")
    args = ap.parse_args()
    pipe = Pipeline()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"cpus {os.cpu_count()}, load average before the run {load}")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        for name, (photo, w, h) in CASES.items():
            n = args.frames if w * h <= 640 * 480 else max(15, args.frames // 3)
            video = make_video(tmpdir / f"{name}.mp4", EXAMPLES / photo, w, h, n)
            faces = len(pipe.faces(cv2.cvtColor(cv2.VideoCapture(str(video)).read()[1], cv2.COLOR_BGR2RGB)))
            for every in (1, 3):
                figures = []
                for with_mp4 in (False, True):
                    outputs = VideoOutputs(video=tmpdir / "out.mp4" if with_mp4 else None,
                                           events=tmpdir / "events.jsonl")
                    stats, _ = run_video(open_source(str(video)), pipe, outputs, VideoConfig(detect_every=every))
                    assert stats.frames == n, f"{stats.frames} of {n} frames processed"
                    figures.append(f"{stats.fps:.1f} fps{' +mp4' if with_mp4 else ''}")
                mode = "detect every frame" if every == 1 else f"--detect-every {every}"
                print(f"{name} ({faces} faces, {n} frames) {mode}: " + ", ".join(figures))


if __name__ == "__main__":
    main()
