"""Prometheus metrics for `GET /metrics`, on a registry of the app's own.

A registry per app (not the global one) so that two apps in one process,
as in the tests, do not collide. Request metrics are labelled by route
template (`/v1/cameras/{camera_id}`), never by the raw path: a fuzzer or a
scanner must not be able to create unbounded label values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class CameraCollector(Collector):
    """Reads the cameras' live counters at scrape time."""

    def __init__(self, cameras: Callable[[], list]) -> None:
        self.cameras = cameras

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("maskwatch_camera_up", "1 while the camera delivers frames", labels=["camera"])
        frames = GaugeMetricFamily("maskwatch_camera_frames", "frames processed since the server started",
                                   labels=["camera"])
        fps = GaugeMetricFamily("maskwatch_camera_fps", "frames processed per second", labels=["camera"])
        share = GaugeMetricFamily("maskwatch_camera_compliance",
                                  "share of labelled people properly masked in the current bucket",
                                  labels=["camera"])
        for cam in self.cameras():
            v = cam.view()
            up.add_metric([cam.spec.id], 1.0 if v["status"] == "live" else 0.0)
            frames.add_metric([cam.spec.id], float(v["frames"]))
            fps.add_metric([cam.spec.id], float(v["fps"]))
            if v["compliance"] is not None:
                share.add_metric([cam.spec.id], float(v["compliance"]))
        yield from (up, frames, fps, share)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("maskwatch_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("maskwatch_http_request_seconds", "time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("maskwatch_inference_queue_seconds", "time a job waited for a worker",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("maskwatch_inference_seconds", "time a worker spent on a job",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("maskwatch_rejected", "requests refused with 503 because the queue was full",
                                registry=r)
        self.images = Counter("maskwatch_images", "uploaded images by outcome", ["outcome"], registry=r)
        self.faces = Counter("maskwatch_faces", "faces found in uploaded images by label", ["label"], registry=r)
        self.pending = Gauge("maskwatch_inference_pending", "jobs queued or running", registry=r)

    def observe_job(self, waited: float, ran: float) -> None:
        self.queue_wait.observe(waited)
        self.inference.observe(ran)
