"""Uploaded bytes -> a checked, decoded image, and the jobs the workers run.

The request's Content-Type and file name are never trusted: the format is
read from the bytes (Pillow's sniffing of the header), the pixel count is
checked from the header before a single pixel is decoded (a decompression
bomb is a small file with a huge size in its header), and only then is the
image decoded. Each failure is an `InputError` with the HTTP status the API
answers and a message naming the reason.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from maskwatch.decode import Decoded, DecodeError, decode_bytes
from maskwatch.pipeline import Pipeline
from maskwatch.types import FrameResult

FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
           "BMP": "image/bmp", "TIFF": "image/tiff"}
"""Formats accepted, as Pillow names them (MPO: a phone's JPEG with a second picture)."""


class InputError(ValueError):
    """An upload the API refuses: `status` is the HTTP code, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def clean_name(name: str | None, default: str = "upload") -> str:
    """A client's file name as a label only: its last path part, printable, at most 200 characters."""
    if not name:
        return default
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:200].strip()
    return base or default


def sniff(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) read from the header only; raises InputError."""
    if not data:
        raise InputError(400, "empty body: send the image as the request body or as a multipart `file` field")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, width, height = img.format or "", img.width, img.height
    except Image.DecompressionBombError as exc:
        raise InputError(413, f"image too large: {exc}") from None
    except UnidentifiedImageError:
        raise InputError(415, "not an image: the content is not JPEG, PNG, WebP, BMP or TIFF") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(422, f"unreadable image header: {exc}") from None
    if fmt not in FORMATS:
        raise InputError(415, f"unsupported image format {fmt or 'unknown'}: send JPEG, PNG, WebP, BMP or TIFF")
    if width * height > max_pixels:
        raise InputError(413, f"image is {width}x{height} = {width * height} pixels, over the limit of "
                              f"{max_pixels}")
    return fmt, width, height


def decode_upload(data: bytes, max_pixels: int) -> Decoded:
    sniff(data, max_pixels)
    try:
        return decode_bytes(data, max_pixels)
    except DecodeError as exc:
        raise InputError(422, f"cannot decode the image: {exc}") from None


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


@dataclass(frozen=True)
class Analysis:
    """What a worker hands back: the result and, when asked for, the annotated JPEG."""

    result: FrameResult
    jpeg: bytes | None = None


def analyze_job(data: bytes, name: str, max_pixels: int, annotated: bool = False):
    """A job for the inference pool: check, decode, detect, classify (and draw)."""

    def run(pipeline: Pipeline) -> Analysis:
        decoded = decode_upload(data, max_pixels)
        result = pipeline.analyze_decoded(decoded, name)
        jpeg = encode_jpeg(pipeline.annotated(decoded, result)) if annotated else None
        return Analysis(result, jpeg)

    return run


def batch_job(items: list[tuple[str, bytes]], max_pixels: int):
    """A job for a batch: one result per image; an unreadable one gets `error` and no faces."""

    def run(pipeline: Pipeline) -> list[tuple[FrameResult, int | None]]:
        out: list[tuple[FrameResult, int | None]] = []
        for name, data in items:
            try:
                out.append((pipeline.analyze_decoded(decode_upload(data, max_pixels), name), None))
            except InputError as exc:
                out.append((FrameResult.failed(name, exc.message), exc.status))
        return out

    return run
