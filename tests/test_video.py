"""Frame sources on videos, image folders and an MJPEG server built from the example photos."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.video import (
    SourceConfig,
    SourceError,
    backoff_delays,
    open_source,
    parse_source,
)
from video_helpers import PAN_FRAMES, MjpegServer, jpeg, write_video

N = PAN_FRAMES  # frames of the `clip` / `mp4` fixtures (conftest.py)


def read_all(raw: str, **cfg) -> tuple[list, object]:
    with open_source(raw, SourceConfig(**cfg)) as src:
        frames = list(src)
    return frames, src.stats


# -- parsing and backoff: pure ----------------------------------------------------------


@pytest.mark.parametrize(("raw", "kind"), [
    ("0", "webcam"), ("2", "webcam"), ("rtsp://cam.local/stream", "url"), ("http://127.0.0.1:8080/x.mjpg", "url"),
    ("HTTPS://host/video", "url"),
])
def test_parse_source_names_live_sources(raw: str, kind: str) -> None:
    spec = parse_source(raw)
    assert (spec.kind, spec.live) == (kind, True)


def test_parse_source_files_folders_and_globs(tmp_path: Path, examples_dir: Path) -> None:
    (tmp_path / "clip.mkv").write_bytes(b"x")
    assert parse_source(str(tmp_path / "clip.mkv")).kind == "file"
    spec = parse_source(str(examples_dir))
    assert spec.kind == "images" and len(spec.paths) == 4 and list(spec.paths) == sorted(spec.paths)
    assert len(parse_source(str(examples_dir / "*83.png")).paths) == 1
    with pytest.raises(FileNotFoundError):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="no images"):
        parse_source(str(tmp_path / "*.jpg"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        parse_source(str(tmp_path / "empty"))


def test_backoff_doubles_up_to_a_cap_and_gives_up() -> None:
    cfg = SourceConfig(reconnect_delay=0.5, reconnect_max_delay=3.0, reconnect_attempts=6)
    assert list(backoff_delays(cfg)) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    endless = backoff_delays(SourceConfig(reconnect_attempts=None))
    assert len([next(endless) for _ in range(100)]) == 100


def test_config_rejects_bad_stride() -> None:
    with pytest.raises(ValueError, match="stride"):
        SourceConfig(stride=0)


# -- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "fourcc"), [(".mp4", "mp4v"), (".avi", "MJPG"), (".mkv", "MJPG"), (".mov", "mp4v")])
def test_every_frame_of_a_file_is_read_in_order(clip, tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = write_video(tmp_path / f"pan{suffix}", clip.frames, fps=20, fourcc=fourcc)
    frames, stats = read_all(str(path))
    assert [f.index for f in frames] == list(range(N))
    assert [f.time for f in frames] == pytest.approx([i / 20 for i in range(N)])
    assert (stats.read, stats.corrupt, stats.dropped, stats.frame_count) == (N, 0, 0, N)
    assert frames[0].rgb.shape == (480, 640, 3) and frames[0].rgb.dtype == np.uint8
    # decoded RGB (not BGR): close to what was written
    assert np.abs(frames[5].rgb.astype(int) - clip.frames[5]).mean() < 6


def test_stride_keeps_every_nth_frame(mp4: Path) -> None:
    frames, stats = read_all(str(mp4), stride=5)
    assert [f.index for f in frames] == [0, 5, 10]
    assert [f.time for f in frames] == pytest.approx([0, 0.2, 0.4])
    assert (stats.read, stats.skipped) == (3, N - 3)


def test_slow_consumer_still_gets_every_file_frame(mp4: Path) -> None:
    with open_source(str(mp4), SourceConfig(queue_size=1)) as src:
        indices = []
        for frame in src:
            time.sleep(0.01)
            indices.append(frame.index)
    assert indices == list(range(N)) and src.stats.dropped == 0


def test_stopping_early_releases_the_reader(mp4: Path) -> None:
    src = open_source(str(mp4), SourceConfig(queue_size=1)).start()
    first = next(iter(src))
    src.close()
    assert first.index == 0
    assert not src._thread.is_alive()


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b"this is not a video at all" * 100, "cannot be opened as a video"),
    (os.urandom(50_000), "cannot be opened as a video"),
])
def test_corrupt_file_gives_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        open_source(str(path))


def test_truncated_file_gives_a_clear_error(mp4: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 3])  # the index (moov) is at the end
    with pytest.raises(SourceError, match=str(path)):
        open_source(str(path))


def test_corrupt_frame_inside_a_file_is_skipped_and_counted(clip, tmp_path: Path) -> None:
    path = write_video(tmp_path / "pan.avi", clip.frames, fourcc="MJPG")
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]  # one JPEG per frame
    assert len(starts) == N
    data[starts[5] : starts[6] - 16] = bytes(starts[6] - 16 - starts[5])  # frame 5's picture zeroed
    path.write_bytes(bytes(data))
    frames, stats = read_all(str(path))
    assert [f.index for f in frames] == [i for i in range(N) if i != 5]
    assert (stats.read, stats.corrupt) == (N - 1, 1)


# -- image sequences ------------------------------------------------------------------


def test_image_sequence_skips_and_counts_corrupt_images(clip, tmp_path: Path) -> None:
    for i, frame in enumerate(clip.frames[:5]):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "f002.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    frames, stats = read_all(str(tmp_path), image_fps=10)
    assert [f.index for f in frames] == [0, 1, 3, 4]
    assert [f.time for f in frames] == pytest.approx([0, 0.1, 0.3, 0.4])
    assert (stats.read, stats.corrupt) == (4, 1)
    globbed, _ = read_all(str(tmp_path / "f00[34].jpg"))
    assert len(globbed) == 2


# -- live: MJPEG over HTTP ------------------------------------------------------------


@pytest.fixture()
def server(clip):
    srv = MjpegServer([jpeg(f) for f in clip.frames[:4]], fps=40).start()
    yield srv
    srv.kill()


def live_config(**kw) -> SourceConfig:
    return SourceConfig(**{"reconnect_delay": 0.1, "reconnect_max_delay": 0.4, "reconnect_attempts": 30,
                           "timeout": 3.0, **kw})


def test_mjpeg_over_http_is_read(server: MjpegServer) -> None:
    with open_source(server.url, live_config()) as src:
        frames = []
        for frame in src:
            frames.append(frame)
            if len(frames) == 10:
                break
    assert src.spec.live
    assert [f.rgb.shape for f in frames] == [(480, 640, 3)] * 10
    assert all(b.time > a.time for a, b in zip(frames, frames[1:], strict=False))
    assert [f.index for f in frames] == sorted(f.index for f in frames)


def test_stream_killed_mid_stream_reconnects_and_frames_keep_coming(server: MjpegServer) -> None:
    with open_source(server.url, live_config()) as src:
        before, after = 0, 0
        killed_at = None
        deadline = time.monotonic() + 20
        for _ in src:
            if killed_at is None:
                before += 1
                if before == 8:
                    server.kill()
                    killed_at = time.monotonic()
                    time.sleep(0.5)  # nobody listening: connection refused, backoff
                    server.restart()
            elif src.stats.reconnects:
                after += 1
                if after == 8:
                    break
            assert time.monotonic() < deadline, "no frames after the restart"
    assert src.stats.reconnects >= 1
    assert after == 8


def test_unreachable_stream_gives_up_with_a_clear_error() -> None:
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = open_source(f"http://127.0.0.1:{port}/x.mjpg", live_config(reconnect_attempts=2, reconnect_delay=0.05))
    with pytest.raises(SourceError, match="cannot be opened"), src:
        list(src)


def test_live_source_drops_stale_frames_when_the_consumer_is_slow(clip) -> None:
    srv = MjpegServer([jpeg(f) for f in clip.frames[:4]], fps=100).start()
    try:
        with open_source(srv.url, live_config()) as src:
            got = 0
            for _ in src:
                time.sleep(0.1)  # ten times slower than the camera
                got += 1
                if got == 5:
                    break
        assert src.stats.dropped > 5
        assert src.stats.read >= got + src.stats.dropped - 1
    finally:
        srv.kill()


@pytest.mark.parametrize(("raw", "shown"), [
    ("rtsp://admin:s3cret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
    ("http://cam.local/video.mjpg", "http://cam.local/video.mjpg"),
    ("rtsp://viewer@cam/x", "rtsp://viewer@cam/x"),
    ("clips/door.mp4", "clips/door.mp4"),
])
def test_a_stream_password_never_shows_in_the_source_name(raw: str, shown: str) -> None:
    from maskwatch.video import public_name

    assert public_name(raw) == shown
