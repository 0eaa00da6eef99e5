"""POST /v1/detect and /v1/detect/batch: photos in, the part-1 JSON schema (or an annotated JPEG) out."""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.datastructures import UploadFile

from maskwatch.server.deps import StateDep
from maskwatch.server.imaging import Analysis, InputError, analyze_job, batch_job, clean_name
from maskwatch.server.pool import PoolClosed, PoolFull
from maskwatch.server.routes._common import problems
from maskwatch.server.schemas import BatchItem, BatchResult, DetectResult
from maskwatch.server.state import AppState
from maskwatch.types import FrameResult

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/detect", tags=["detect"])

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "application/octet-stream")
_binary = {"schema": {"type": "string", "format": "binary"}}
SINGLE_BODY: dict[str, Any] = {"requestBody": {"required": True, "description": (
    "the image: as the raw body (any of these types; the content is sniffed, the type header is not trusted) "
    "or as the `file` field of a multipart form"), "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    **{t: _binary for t in IMAGE_TYPES}}}}
BATCH_BODY: dict[str, Any] = {"requestBody": {"required": True, "description": "one `files` field per image",
    "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


def busy(state: AppState, exc: Exception) -> HTTPException:
    state.metrics.rejected.inc()
    state.images["rejected"] += 1
    return HTTPException(503, f"busy: {exc}; retry later", headers={"Retry-After": str(state.settings.retry_after)})


def count(state: AppState, result: FrameResult) -> None:
    state.images["analysed"] += 1
    state.metrics.images.labels("analysed").inc()
    for label, n in result.counts().items():
        state.faces[label] += n
        state.metrics.faces.labels(label).inc(n)


def refused(state: AppState, exc: InputError) -> HTTPException:
    state.images["refused"] += 1
    state.metrics.images.labels("refused").inc()
    return HTTPException(exc.status, exc.message)


async def upload_of(request: Request, max_files: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of each uploaded image: multipart parts that are files, or the raw body.

    The body is already capped by the size-limit middleware."""
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith("multipart/form-data"):
        return [("upload", await request.body())]
    form = await request.form(max_files=max_files, max_fields=max_files + 10)
    try:
        out = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                out.append((key, clean_name(value.filename, default="upload"), await value.read()))
            elif key in ("file", "files"):
                raise HTTPException(422, f"form field {key!r} must be a file upload, not text")
        return [(name, data) for _key, name, data in out]
    finally:
        await form.close()


@router.post("", response_model=DetectResult, response_model_exclude_none=True, openapi_extra=SINGLE_BODY,
             responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the JSON result, or the annotated JPEG with ?annotated=true"},
                        **problems(400, 401, 413, 415, 422, 503)})
async def detect(request: Request, state: StateDep,
                 annotated: Annotated[bool, Query(description="answer with the annotated JPEG instead")] = False,
                 with_image: Annotated[bool, Query(description="add the annotated JPEG to the JSON (base64, "
                                                               "`annotated_jpeg`): one inference for both")] = False,
                 ) -> Any:
    """Find the faces in one photo and label each `mask`, `no_mask` or `incorrect`."""
    files = await upload_of(request, max_files=1)
    if len(files) != 1:
        raise HTTPException(422, "send exactly one image: the raw body, or one multipart `file` field "
                                 f"(got {len(files)} files)")
    name, data = files[0]
    try:
        analysis: Analysis = await state.pool.run(analyze_job(data, name, state.settings.max_pixels,
                                                              annotated or with_image))
    except (PoolFull, PoolClosed) as exc:
        raise busy(state, exc) from None
    except InputError as exc:
        raise refused(state, exc) from None
    count(state, analysis.result)
    if annotated:
        assert analysis.jpeg is not None
        return Response(analysis.jpeg, media_type="image/jpeg",
                        headers={"X-Faces": str(len(analysis.result.faces))})
    out = analysis.result.to_dict()
    if with_image and analysis.jpeg is not None:
        out["annotated_jpeg"] = base64.b64encode(analysis.jpeg).decode("ascii")
    return out


@router.post("/batch", response_model=BatchResult, response_model_exclude_none=True, openapi_extra=BATCH_BODY,
             responses=problems(400, 401, 413, 415, 422, 503))
async def detect_batch(request: Request, state: StateDep) -> Any:
    """Several photos in one multipart request; each gets a result, an unreadable one `error` and its status."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(415, "send a multipart/form-data body with one `files` field per image")
    limit = state.settings.max_batch
    files = await upload_of(request, max_files=limit)
    if not files:
        raise HTTPException(422, "no files: send one multipart `files` field per image")
    if len(files) > limit:
        raise HTTPException(413, f"{len(files)} files, at most {limit} per batch")
    # A batch decodes its images one after the other on one worker: it holds len(files) slots, but never
    # more than the whole pool, so a batch larger than the queue still runs once the pool is idle.
    slots = min(len(files), state.pool.capacity)
    try:
        results = await state.pool.run(batch_job(files, state.settings.max_pixels), slots=slots)
    except (PoolFull, PoolClosed) as exc:
        raise busy(state, exc) from None
    items = []
    for result, status in results:
        if status is None:
            count(state, result)
        else:
            state.images["refused"] += 1
            state.metrics.images.labels("refused").inc()
        items.append({**result.to_dict(), "status": status or 200})
    return BatchResult(results=[BatchItem.model_validate(i) for i in items])
