"""The H.264 MP4 writer (ffmpeg from imageio-ffmpeg)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from maskwatch.encode import EncodeConfig, Mp4Writer, frame_count, output_params, probe
from video_helpers import pan

N = 12


def test_output_params_are_browser_friendly() -> None:
    assert output_params(EncodeConfig(), with_audio=False) == ["-preset", "veryfast", "-movflags", "+faststart"]
    assert "-shortest" in output_params(EncodeConfig(), with_audio=True)


def test_writer_makes_h264_with_the_right_frame_count(tmp_path: Path) -> None:
    clip = pan(n=N)
    out = tmp_path / "out" / "x.mp4"
    with Mp4Writer(out, 640, 480, fps=25) as writer:
        for f in clip.frames:
            writer.write(f)
        writer.write(cv2.resize(clip.frames[0], (320, 240)))  # another size: resized
    meta = probe(out)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["size"] == (640, 480)
    assert frame_count(out) == N + 1
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (b"h264", b"avc1")
    cap.release()


def test_writer_keeps_the_input_sound(tmp_path: Path) -> None:
    import imageio_ffmpeg

    src = tmp_path / "with_sound.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", "-c:v", "mpeg4", "-c:a", "aac",
                    str(src)], check=True, timeout=60)
    assert probe(src)["audio_codec"]
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, 320, 240, fps=25, audio_from=src) as writer:
        for _ in range(25):
            writer.write(np.zeros((240, 320, 3), np.uint8))
    meta = probe(out)
    assert meta["codec"] == "h264" and meta["audio_codec"] == "aac"


def test_odd_frame_size_is_padded_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with Mp4Writer(out, 401, 267, fps=10) as writer:
        for _ in range(3):
            writer.write(np.full((267, 401, 3), 200, np.uint8))
    assert probe(out)["size"] == (402, 268) and frame_count(out) == 3
