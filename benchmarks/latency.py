"""Median latency of the whole pipeline and of each stage, on 640x480 and 1920x1080 photos.

    python benchmarks/latency.py [--runs 30]

The photos are built from the committed examples (resized, letterboxed, JPEG
encoded) so the figures are reproducible from the repo alone. End to end means
JPEG bytes in, classified faces out (decode + detect + align + classify).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from maskwatch.align import align_all
from maskwatch.annotate import annotate
from maskwatch.decode import decode_bytes, decode_file
from maskwatch.pipeline import Pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = {
    "640x480": ("maksssksksss83.png", 640, 480),
    "1920x1080": ("maksssksksss787.png", 1920, 1080),
    "6000x4000": ("maksssksksss787.png", 6000, 4000),
}


def letterbox(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    small = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    out = np.full((height, width, 3), 127, np.uint8)
    y, x = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up: first call allocates
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="timed runs per stage (the 6000x4000 case uses a fifth)")
    args = ap.parse_args()
    pipe = Pipeline()
    print(f"cpus {os.cpu_count()}, runs {args.runs}, median ms")
    for name, (file, w, h) in CASES.items():
        rgb = letterbox(decode_file(EXAMPLES / file).pixels, w, h)
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        faces = pipe.detector(rgb)
        crops = align_all(rgb, faces)
        result = pipe.analyze(jpeg)
        stages = {
            "end_to_end": partial(pipe.analyze, jpeg),
            "decode": partial(decode_bytes, jpeg),
            "detect": partial(pipe.detector, rgb),
            "align": partial(align_all, rgb, faces),
            "classify": partial(pipe.classifier, crops),
            "annotate": partial(annotate, rgb, result.faces),
        }
        runs = args.runs if w * h < 10_000_000 else max(3, args.runs // 5)
        figures = {k: median_ms(fn, runs) for k, fn in stages.items()}
        print(f"{name} ({len(result.faces)} faces): " + "  ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
