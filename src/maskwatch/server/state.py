"""What one running app holds: settings, the inference pool, the cameras and the event store."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from maskwatch.pipeline import PipelineConfig
from maskwatch.server.cameras import CameraManager
from maskwatch.server.metrics import CameraCollector, Metrics
from maskwatch.server.pool import InferencePool
from maskwatch.server.settings import Settings
from maskwatch.store import Store, prune_snapshots

log = logging.getLogger(__name__)

T = TypeVar("T")


class AppState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.time()
        self.metrics = Metrics()
        self.pipeline_config = PipelineConfig(threshold=settings.threshold)
        self.pool = InferencePool(self.pipeline_config, settings.workers, settings.queue_size,
                                  observe=self.metrics.observe_job)
        self.metrics.pending.set_function(lambda: self.pool.pending)
        self.store_path = settings.data_dir / "events.sqlite"
        self.cameras = CameraManager(settings.data_dir, self.store_path, self.pipeline_config,
                                     snapshots=settings.snapshots, stream_fps=settings.stream_fps,
                                     bucket_seconds=settings.bucket_seconds, history=settings.history_buckets,
                                     max_cameras=settings.max_cameras, allow_webcams=settings.allow_webcams,
                                     webhooks=tuple(settings.alert_webhooks))
        self.metrics.registry.register(CameraCollector(lambda: list(self.cameras.cameras.values())))
        self.images: Counter[str] = Counter()
        self.faces: Counter[str] = Counter()
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self._pruner: asyncio.Task | None = None

    def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = Store(self.store_path)
        self.pool.start()
        self.cameras.load()
        self._pruner = asyncio.get_running_loop().create_task(self._prune_forever())

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
        await asyncio.to_thread(self.cameras.close)
        await asyncio.to_thread(self.pool.close)
        if self._store is not None:
            self._store.close()

    async def db(self, fn: Callable[[Store], T]) -> T:
        """Run `fn(store)` on a thread, one at a time (one SQLite connection for reading)."""
        def locked() -> T:
            assert self._store is not None
            with self._store_lock:
                return fn(self._store)
        return await asyncio.to_thread(locked)

    def prune(self) -> int:
        """Delete snapshots past the retention period; returns how many."""
        before = time.time() - self.settings.snapshot_retention_hours * 3600
        assert self._store is not None
        with self._store_lock:
            n = prune_snapshots(self._store, before)
        if n:
            log.info("deleted %d face snapshot%s older than %.1f h", n, "s" * (n != 1),
                     self.settings.snapshot_retention_hours)
        return n

    async def _prune_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.prune)
            except Exception:  # a locked database now and then: try again next round
                log.exception("snapshot pruning failed")
            await asyncio.sleep(min(600.0, self.settings.snapshot_retention_hours * 3600 / 4))
