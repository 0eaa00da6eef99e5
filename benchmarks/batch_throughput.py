"""Images per second: one process (what `maskwatch detect` runs) vs `maskwatch batch` on a local Ray.

    PYTHONPATH=src python benchmarks/batch_throughput.py [--cpus 2] [--limit N]

Both analyse the val photos listed in ../shared/data/detection/val.json with
the default settings. Single process: one `Pipeline` (ONNX threads = all
cores), decode + analyse in a loop, as `detect` does (no output files).
Ray: a fresh local instance with `--cpus` CPUs, one actor per CPU (1 ONNX
thread each), Parquet parts written; timed from the run's start (actors
starting, models loading) to the last part, Ray's own start timed apart.
The two runs' results are compared: any difference is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import ray

from maskwatch.batch import BatchConfig, connect, list_inputs, read_results, rows_to_results, run_batch
from maskwatch.decode import DecodeError, decode_file
from maskwatch.pipeline import Pipeline

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "detection" / "val.json"


def single_process(paths: list[str]) -> tuple[float, float, dict[str, dict]]:
    """(model load s, analysis s, results by image)."""
    t = time.perf_counter()
    pipeline = Pipeline()
    loaded = time.perf_counter() - t
    results = {}
    t = time.perf_counter()
    for p in paths:
        try:
            results[p] = pipeline.analyze_decoded(decode_file(p), p).to_dict()
        except (DecodeError, OSError) as exc:
            results[p] = {"image": p, "error": str(exc)}
    return loaded, time.perf_counter() - t, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, default=VAL, help="maskwatch JSON listing the photos. Default: the val split")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance. Default: 2")
    ap.add_argument("--part-size", type=int, default=8, help="images per Parquet part. Default: 8")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    entries = json.loads(args.val.read_text())
    paths = [str(args.val.parent / e["image"]) for e in entries][: args.limit or None]
    print(f"{len(paths)} photos from {args.val}; {os.cpu_count()} cores on this machine, "
          f"load average {os.getloadavg()[0]:.1f} at the start")

    loaded, seconds, single = single_process(paths)
    print(f"single process: {len(paths) / seconds:.2f} images/s ({seconds:.1f} s; models loaded in {loaded:.1f} s)")

    t = time.perf_counter()
    connect("local", args.cpus)
    started = time.perf_counter() - t
    try:
        with tempfile.TemporaryDirectory() as tmp:
            items, _ = list_inputs(paths)
            run = run_batch(items, BatchConfig(out=Path(tmp), part_size=args.part_size))
            got = rows_to_results(read_results(Path(tmp)).to_pylist())
    finally:
        ray.shutdown()
    print(f"ray local, {args.cpus} CPUs ({args.cpus} actors x 1 thread): {run.analysed / run.seconds:.2f} images/s "
          f"({run.seconds:.1f} s with actor start and Parquet; Ray started in {started:.1f} s)")
    print(f"speed-up: {(run.analysed / run.seconds) / (len(paths) / seconds):.2f}x")
    differ = [p for p in paths if got.get(p) != single[p]]
    print(f"results equal to the single process: {len(paths) - len(differ)}/{len(paths)}"
          + (f"; differ: {differ[:5]}" if differ else ""))
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other jobs on the machine count here)")


if __name__ == "__main__":
    main()
