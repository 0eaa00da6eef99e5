"""Write annotated frames to an H.264 MP4 that browsers play.

OpenCV's headless build cannot encode H.264, so frames are piped to the
ffmpeg binary that ships inside the `imageio-ffmpeg` wheel (libx264,
yuv420p, `+faststart` so playback starts before the whole file loaded).
The input's audio track, when it has one, is muxed in (re-encoded to AAC,
which every browser plays) and cut to the video's length.

ffmpeg runs in its own process group, so a Ctrl-C in the terminal reaches
only Python; `close` then ends the pipe and ffmpeg writes a complete file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeConfig:
    """`preset`: x264 speed; `veryfast` costs a few ms per 640x480 frame on
    one core, slower presets make smaller files. `quality`: 1-10 (imageio's
    scale, 10 best; 6 is CRF 20: little visible loss on annotated video).
    `audio`: copy the input's sound track when it has one."""

    preset: str = "veryfast"
    quality: float = 6.0
    audio: bool = True
    log_level: str = "error"


def probe(path: str | Path) -> dict[str, Any]:
    """ffmpeg's view of a media file: codec, fps, size, duration and
    `audio_codec` when it has sound. Raises OSError when ffmpeg cannot read it."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        return dict(next(gen))
    except (OSError, RuntimeError, StopIteration) as exc:
        raise OSError(f"{path}: ffmpeg cannot read it: {exc}") from exc
    finally:
        gen.close()


def frame_count(path: str | Path) -> int:
    """Frames in a video file, counted by decoding it (exact, not the header's guess)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def output_params(config: EncodeConfig, with_audio: bool) -> list[str]:
    """Extra ffmpeg output options (the rest is imageio-ffmpeg's command)."""
    params = ["-preset", config.preset, "-movflags", "+faststart"]
    if with_audio:
        params += ["-c:a", "aac", "-b:a", "128k", "-shortest"]
    return params


class Mp4Writer:
    """Feeds RGB frames of one size to ffmpeg; frames of another size are
    resized, and an odd side gets one more (repeated) pixel row or column.

    Example:
        >>> with Mp4Writer("out.mp4", 640, 480, fps=25) as out:
        ...     out.write(rgb)
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float,
                 audio_from: str | Path | None = None, config: EncodeConfig | None = None) -> None:
        import imageio_ffmpeg

        self.path = Path(path)
        self.config = cfg = config or EncodeConfig()
        self.width, self.height = width + width % 2, height + height % 2  # yuv420p needs even sides
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.audio = audio_from if cfg.audio and audio_from is not None and has_audio(audio_from) else None
        self._gen = imageio_ffmpeg.write_frames(
            str(self.path), (self.width, self.height), fps=float(fps), codec="libx264", quality=cfg.quality,
            macro_block_size=1,  # the default 16 would rescale 1080 to 1088
            ffmpeg_log_level=cfg.log_level, output_params=output_params(cfg, self.audio is not None),
            audio_path=None if self.audio is None else str(self.audio),
        )
        self._gen.send(None)  # starts ffmpeg

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            if 0 <= self.height - h <= 1 and 0 <= self.width - w <= 1:  # odd side: repeat the last row or column
                rgb = cv2.copyMakeBorder(rgb, 0, self.height - h, 0, self.width - w, cv2.BORDER_REPLICATE)
            else:
                rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        self._gen.send(np.ascontiguousarray(rgb))
        self.frames += 1

    def close(self) -> None:
        """Ends the stream and waits for ffmpeg to finish the file."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None
            log.info("%s: %d frames written", self.path, self.frames)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def has_audio(path: str | Path) -> bool:
    try:
        return "audio_codec" in probe(path)
    except OSError:
        return False
