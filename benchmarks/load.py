"""Load test of `maskwatch serve`: N concurrent clients posting a 640x480 JPEG for S seconds.

    python benchmarks/load.py --clients 20 --seconds 60            # starts its own server on loopback
    python benchmarks/load.py --url http://127.0.0.1:8000 --key K   # or loads a running one

Each client posts, waits for the answer, and posts again (closed loop), so
the server's queue holds at most `--clients` images. Prints requests per
second, latency percentiles of successful requests, the answers by status
code, 5xx errors (503 "busy" among them, counted apart), connection errors,
and the server's peak memory (RSS) when it started the server itself. Exits 1
when any request got a 5xx or failed to connect.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import httpx
import numpy as np

from maskwatch.decode import decode_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def photo_640x480(name: str = "maksssksksss787.png") -> bytes:
    """An example photo letterboxed onto a 640x480 canvas, as JPEG (a camera-sized upload with 10 faces)."""
    rgb = decode_file(EXAMPLES / name).pixels
    scale = min(640 / rgb.shape[1], 480 / rgb.shape[0])
    small = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((480, 640, 3), 127, np.uint8)
    y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, data_dir: str, workers: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "maskwatch.cli", "serve", "--port", str(port), "--data-dir", data_dir]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy in 120 s")


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(url: str, key: str | None, clients: int, seconds: float, body: bytes, pid: int | None,
        obey_retry_after: bool = False) -> dict:
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    headers = {"Content-Type": "image/jpeg", **({"X-API-Key": key} if key else {})}
    start = time.monotonic()
    stop_at = start + seconds
    peak = [rss_mib(pid) if pid else None]

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    r = http.post(url + "/v1/detect", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    with lock:
                        failures[type(exc).__name__] += 1
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        latencies.append(dt)
                if r.status_code == 503 and obey_retry_after:
                    time.sleep(float(r.headers.get("retry-after", "1")))

    def watch_memory() -> None:
        while pid and time.monotonic() < stop_at:
            now = rss_mib(pid)
            if now is not None:
                peak[0] = max(peak[0] or 0.0, now)
            time.sleep(0.5)

    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=watch_memory)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) >= 2 else [float("nan")] * 99
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": sum(statuses.values()),
        "ok": statuses.get(200, 0), "throughput_rps": round(statuses.get(200, 0) / elapsed, 2),
        "latency_ms": {"p50": round(q[49] * 1000, 1), "p90": round(q[89] * 1000, 1), "p99": round(q[98] * 1000, 1),
                       "max": round(max(latencies, default=float("nan")) * 1000, 1)},
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "errors_5xx": server_errors, "busy_503": statuses.get(503, 0), "connection_errors": dict(failures),
        "server_peak_rss_mib": None if peak[0] is None else round(peak[0], 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server; default: start `maskwatch serve` on a free loopback port")
    p.add_argument("--key", default=os.environ.get("MASKWATCH_API_KEY"), help="API key, if the server has one")
    p.add_argument("--clients", type=int, default=20, help="concurrent clients. Default: 20")
    p.add_argument("--seconds", type=float, default=60.0, help="Default: 60")
    p.add_argument("--obey-retry-after", action="store_true",
                   help="a client that gets 503 waits the Retry-After seconds before its next post (by default "
                        "it posts again at once: the worst case)")
    p.add_argument("--workers", type=int, default=None, help="inference workers of the started server. "
                                                              "Default: one per core")
    args = p.parse_args()
    body = photo_640x480()
    proc = None
    url = args.url
    with tempfile.TemporaryDirectory() as data_dir:
        if url is None:
            port = free_port()
            proc = start_server(port, data_dir, args.workers)
            url = f"http://127.0.0.1:{port}"
        try:
            faces = len(httpx.post(url + "/v1/detect", content=body, timeout=60,
                                   headers={"X-API-Key": args.key} if args.key else {}).json().get("faces", []))
            report = run(url, args.key, args.clients, args.seconds, body, proc.pid if proc else None,
                         args.obey_retry_after)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    report = {"url": url, "image": f"640x480 JPEG, {len(body)} bytes, {faces} faces", "cpus": os.cpu_count(),
              **report}
    print(json.dumps(report, indent=2))
    lat = report["latency_ms"]
    print(f"{report['clients']} clients, {report['seconds']} s: {report['throughput_rps']} images/s, "
          f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, {report['errors_5xx']} 5xx "
          f"({report['busy_503']} busy), {sum(report['connection_errors'].values())} connection errors")
    return 1 if report["errors_5xx"] or report["connection_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
