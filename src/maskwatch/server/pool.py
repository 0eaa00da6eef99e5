"""Inference on a fixed pool of worker threads behind a bounded queue.

Why threads: onnxruntime releases the GIL while it runs, so N threads with
one single-threaded detector + classifier each keep N cores busy without the
memory of N processes. Why bounded: a burst of uploads must not pile up
decoded images in memory; once `workers + queue_size` jobs are in the pool a
new one is refused at once (`PoolFull`, which the API turns into 503 with
Retry-After) instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from maskwatch.pipeline import Pipeline, PipelineConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


class PoolFull(RuntimeError):
    """Every worker is busy and the queue is full."""


class PoolClosed(RuntimeError):
    """The pool is shutting down."""


@dataclass
class _Job:
    fn: Callable[[Pipeline], Any]
    future: Future
    queued_at: float


class InferencePool:
    """`await pool.run(fn)` runs `fn(pipeline)` on a worker, or raises `PoolFull`.

    Example:
        >>> pool = InferencePool(PipelineConfig(), workers=2, queue_size=8)
        >>> result = await pool.run(lambda p: p.analyze(data))
    """

    def __init__(self, config: PipelineConfig, workers: int, queue_size: int,
                 observe: Callable[[float, float], None] | None = None) -> None:
        self.config = replace(config, threads=1)
        self.workers = workers
        self.capacity = workers + queue_size
        self.observe = observe
        """Called with (seconds waited in the queue, seconds run) after each job."""
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._busy = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.pipelines: list[Pipeline] = []

    def start(self) -> InferencePool:
        """Load one pipeline per worker (about 0.3 s each) and start the threads."""
        for i in range(self.workers):
            pipeline = Pipeline(self.config)
            self.pipelines.append(pipeline)
            t = threading.Thread(target=self._work, args=(pipeline,), name=f"inference-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._pending

    @property
    def busy(self) -> int:
        return self._busy

    def submit(self, fn: Callable[[Pipeline], T], slots: int = 1) -> Future:
        """Queue `fn`; `slots` is how many images it holds (a batch counts each)."""
        with self._lock:
            if self._closed:
                raise PoolClosed("the server is shutting down")
            if self._pending + slots > self.capacity:
                raise PoolFull(f"{self._pending} images in the pool, capacity {self.capacity}")
            self._pending += slots
        future: Future = Future()
        future.add_done_callback(lambda _f: self._release(slots))
        self._queue.put(_Job(fn, future, time.perf_counter()))
        return future

    async def run(self, fn: Callable[[Pipeline], T], slots: int = 1) -> T:
        return await asyncio.wrap_future(self.submit(fn, slots))

    def _release(self, slots: int) -> None:
        with self._lock:
            self._pending -= slots

    def _work(self, pipeline: Pipeline) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            started = time.perf_counter()
            with self._lock:
                self._busy += 1
            try:
                job.future.set_result(job.fn(pipeline))
            except BaseException as exc:  # handed to the awaiting request
                job.future.set_exception(exc)
            finally:
                with self._lock:
                    self._busy -= 1
                if self.observe is not None:
                    self.observe(started - job.queued_at, time.perf_counter() - started)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, let queued ones finish, stop the threads."""
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
