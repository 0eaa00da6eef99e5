"""Bytes or files -> RGB uint8 arrays, with EXIF orientation made explicit.

Decoding goes through Pillow: it reads the EXIF orientation tag, refuses
decompression bombs, and names what is wrong with a truncated or foreign file.
Every image leaves here as 8-bit RGB in the pixel grid *as stored on disk*,
together with its EXIF orientation (1-8); `upright` turns it the way a viewer
shows it, and `to_stored` / `to_upright` move coordinates between the two.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 100_000_000
"""Larger images are refused (a 10000x10000 photo still passes)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DecodeError(ValueError):
    """An input that is not a readable image; the message names the reason."""


@dataclass(frozen=True)
class Decoded:
    """Pixels as stored (H x W x 3 RGB uint8) and the EXIF orientation."""

    pixels: np.ndarray
    orientation: int = 1

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def upright(self) -> np.ndarray:
        return apply_orientation(self.pixels, self.orientation)


def decode_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> Decoded:
    if not data:
        raise DecodeError("empty file (0 bytes)")
    return _decode(io.BytesIO(data), max_pixels)


def decode_file(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> Decoded:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise DecodeError("is a folder, not an image")
    if p.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    with p.open("rb") as fh:
        return _decode(fh, max_pixels)


def _decode(fh: io.BufferedIOBase | io.BytesIO, max_pixels: int) -> Decoded:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            img = Image.open(fh)
            if img.width * img.height > max_pixels:
                raise DecodeError(f"{img.width}x{img.height} is over the limit of {max_pixels} pixels")
            img.load()
            orientation = int(img.getexif().get(0x0112, 1) or 1)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DecodeError(_reason(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"cannot decode: {exc}") from None
    return Decoded(to_rgb8(img), orientation if 1 <= orientation <= 8 else 1)


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unknown or corrupt format)"
    return f"too many pixels: {exc}"


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode (L, LA, P, RGBA, CMYK, 16-bit, float) -> RGB uint8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            top = 65535.0  # 16-bit data: full range, however dark this image is
        elif img.mode == "F":
            top = 1.0 if arr.max() <= 1.0 else 255.0
        else:  # 32-bit integers: 8-bit or 16-bit values stored wide
            top = 65535.0 if arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels -> as a viewer shows them (EXIF orientation 1-8)."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: a.transpose(1, 0, 2)[::-1, :],
    }
    return np.ascontiguousarray(ops[orientation](pixels))


def to_upright(points: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Map (N, 2) points from the stored grid (width x height) to the upright one."""
    x, y = points[:, 0], points[:, 1]
    w, h = width, height
    mapped = {
        1: (x, y),
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (h - y, x),
        7: (h - y, w - x),
        8: (y, w - x),
    }[orientation]
    return np.stack(mapped, axis=1)


_INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def to_stored(points: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Map (N, 2) points from the upright grid back to the stored one (stored size given)."""
    uw, uh = (height, width) if orientation >= 5 else (width, height)
    return to_upright(points, _INVERSE[orientation], uw, uh)


def _move_boxes(boxes: np.ndarray, move, orientation: int, width: int, height: int) -> np.ndarray:
    """Move (N, 4) x1,y1,x2,y2 boxes corner by corner; turned corners are re-sorted."""
    if orientation == 1 or len(boxes) == 0:
        return boxes
    a = move(boxes[:, 0:2], orientation, width, height)
    b = move(boxes[:, 2:4], orientation, width, height)
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1)


def boxes_to_stored(boxes: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Boxes from the upright grid to the stored grid (stored size given)."""
    return _move_boxes(boxes, to_stored, orientation, width, height)


def boxes_to_upright(boxes: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Boxes from the stored grid (stored size given) to the upright grid."""
    return _move_boxes(boxes, to_upright, orientation, width, height)


def list_images(paths: list[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """(images, ignored): folders are searched recursively, sorted, for files
    with an image suffix (other files are ignored, so a README in a photo
    folder is no error); a file named on its own is always taken."""
    images: list[Path] = []
    ignored: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if not p.is_dir():
            images.append(p)
            continue
        for f in sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")):
            (images if f.suffix.lower() in IMAGE_SUFFIXES else ignored).append(f)
    return images, ignored
