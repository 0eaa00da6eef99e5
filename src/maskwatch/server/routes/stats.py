"""/v1/stats (a JSON summary), /v1/health (no key needed) and /metrics (Prometheus)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import maskwatch
from maskwatch.server.deps import StateDep
from maskwatch.server.routes._common import problems
from maskwatch.server.schemas import Health, Stats
from maskwatch.store import alert_counts
from maskwatch.types import LABELS

router = APIRouter(tags=["stats"])
health_router = APIRouter(tags=["health"])


@health_router.get("/v1/health", response_model=Health)
async def health(state: StateDep) -> Any:
    """Cheap liveness check for load balancers and the container's HEALTHCHECK; never needs the key."""
    return {"status": "ok", "version": maskwatch.__version__, "workers": state.pool.workers,
            "cameras": len(state.cameras.cameras)}


@router.get("/v1/stats", response_model=Stats, responses=problems(401))
async def stats(state: StateDep) -> Any:
    hour_ago = time.time() - 3600
    total, last_hour = await state.db(lambda s: (alert_counts(s), alert_counts(s, hour_ago)))
    cameras = list(state.cameras.cameras.values())
    return {
        "uptime_seconds": round(time.time() - state.started, 1),
        "workers": state.pool.workers,
        "queue_capacity": state.pool.capacity,
        "pending": state.pool.pending,
        "images": {k: state.images[k] for k in ("analysed", "refused", "rejected")},
        "faces": {k: state.faces[k] for k in LABELS},
        "cameras": len(cameras),
        "cameras_live": sum(c.view()["status"] == "live" for c in cameras),
        "alerts": {k: total.get(k, 0) for k in LABELS},
        "alerts_last_hour": {k: last_hour.get(k, 0) for k in LABELS},
    }


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
          "description": "Prometheus text format"}, **problems(401)})
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
