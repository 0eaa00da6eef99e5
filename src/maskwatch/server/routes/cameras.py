"""/v1/cameras: add, list, show, delete live cameras, and watch one as annotated MJPEG."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from maskwatch.server.cameras import Camera, CameraError
from maskwatch.server.deps import CameraDep, StateDep
from maskwatch.server.routes._common import problems
from maskwatch.server.schemas import CameraCreate, CameraList, CameraOut

router = APIRouter(prefix="/v1/cameras", tags=["cameras"])

BOUNDARY = "maskwatchframe"


@router.post("", response_model=CameraOut, status_code=201, responses=problems(400, 401, 409, 413, 422))
async def add_camera(body: CameraCreate, state: StateDep) -> Any:
    """Start a camera; it is saved and comes back when the server restarts."""
    options = body.model_dump(exclude={"name", "url"})
    try:
        camera = await asyncio.to_thread(state.cameras.add, body.name, body.url, **options)
    except CameraError as exc:
        raise HTTPException(exc.status, exc.message) from None
    return camera.view()


@router.get("", response_model=CameraList, responses=problems(401))
async def list_cameras(state: StateDep) -> Any:
    return {"cameras": [c.view() for c in list(state.cameras.cameras.values())]}


@router.get("/{camera_id}", response_model=CameraOut, responses=problems(401, 404))
async def get_camera(camera: CameraDep) -> Any:
    return camera.view()


@router.delete("/{camera_id}", status_code=204, response_class=Response, responses=problems(401, 404))
async def delete_camera(camera_id: str, state: StateDep) -> Response:
    """Stop the camera and forget it (its alerts stay in the event store)."""
    if not await asyncio.to_thread(state.cameras.remove, camera_id):
        raise HTTPException(404, f"camera {camera_id!r} not found")
    return Response(status_code=204)


async def mjpeg(camera: Camera, request: Request, poll: float = 0.04) -> AsyncIterator[bytes]:
    """Each new annotated frame as one part of multipart/x-mixed-replace, until the client goes
    or the camera is deleted. It polls the camera's frame counter on the event loop: a viewer
    costs no thread, however many watch."""
    seq, idle = 0, 0.0
    while not camera.stop.is_set():
        if camera.jpeg_seq == seq or camera.jpeg is None:
            await asyncio.sleep(poll)
            idle += poll
            if idle >= 1.0:  # no new frame for a second: is anyone still watching?
                idle = 0.0
                if await request.is_disconnected():
                    return
            continue
        idle = 0.0
        seq, jpeg = camera.jpeg_seq, camera.jpeg
        yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
               + jpeg + b"\r\n")


@router.get("/{camera_id}/stream", response_class=StreamingResponse, responses={
    200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {
        "schema": {"type": "string", "format": "binary"}}},
        "description": "annotated JPEG frames as they are processed (an <img> src plays it)"},
    **problems(401, 404)})
async def stream_camera(camera: CameraDep, request: Request) -> StreamingResponse:
    """The live annotated view (MJPEG): boxes coloured by each person's voted label."""
    return StreamingResponse(mjpeg(camera, request), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                             headers={"Cache-Control": "no-store"})


@router.get("/{camera_id}/snapshot", response_class=Response, responses={
    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
          "description": "the latest annotated frame"}, **problems(401, 404)})
async def camera_frame(camera: CameraDep) -> Response:
    """The latest annotated frame as one JPEG (404 until the first frame arrived)."""
    jpeg = camera.jpeg
    if jpeg is None:
        raise HTTPException(404, f"camera {camera.spec.id!r} has no frame yet (status {camera.status})")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
