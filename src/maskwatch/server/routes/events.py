"""/v1/events: the alerts raised by the cameras, newest first, paged and filtered."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from maskwatch.server.deps import StateDep
from maskwatch.server.routes._common import problems
from maskwatch.server.schemas import EventOut, EventPage, Label
from maskwatch.store import alert_page, alert_snapshot

router = APIRouter(prefix="/v1/events", tags=["events"])


def unix(t: datetime | None) -> float | None:
    """A datetime as UNIX seconds; one without a zone is taken as UTC."""
    if t is None:
        return None
    return (t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)).timestamp()


@router.get("", response_model=EventPage, responses=problems(401, 422))
async def list_events(
    state: StateDep,
    camera: Annotated[str | None, Query(max_length=64, description="only this camera's alerts (its id)")] = None,
    since: Annotated[datetime | None, Query(description="raised at or after (ISO 8601; UTC if no zone)")] = None,
    until: Annotated[datetime | None, Query(description="raised before (ISO 8601; UTC if no zone)")] = None,
    label: Annotated[list[Label] | None, Query(description="only these labels; repeatable")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Any:
    try:
        lo, hi = unix(since), unix(until)
    except (OverflowError, ValueError, OSError) as exc:
        raise HTTPException(422, f"since/until: not a usable time ({exc})") from None
    total, rows = await state.db(lambda s: alert_page(s, camera, lo, hi, label, limit, offset))
    events = [EventOut(id=a.id, camera=a.source, track_id=a.track_id, label=a.label, confidence=a.confidence,
                       first_seen=datetime.fromtimestamp(a.first_seen, timezone.utc),
                       time=datetime.fromtimestamp(a.time, timezone.utc), video_time=a.video_time,
                       box=None if a.box is None else list(a.box),
                       snapshot_url=f"/v1/events/{a.id}/snapshot" if has else None) for a, has in rows]
    more = offset + len(events) < total
    return EventPage(total=total, limit=limit, offset=offset, next_offset=offset + len(events) if more else None,
                     events=events)


@router.get("/{event_id}/snapshot", response_class=Response, responses={
    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
          "description": "the face at the alert"}, **problems(401, 404)})
async def event_snapshot(event_id: str, state: StateDep) -> Response:
    """The face snapshot of one alert (kept only when snapshots are on, for the retention period)."""
    jpeg = await state.db(lambda s: alert_snapshot(s, event_id))
    if jpeg is None:
        raise HTTPException(404, f"no snapshot for event {event_id!r} (unknown event, snapshots off, or expired)")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
