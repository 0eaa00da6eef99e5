"""The dashboard: static pages shipped inside the package (no build step, nothing fetched from elsewhere).

The pages are code only; every number and picture on them comes from the
API, with the key the user types in (kept in the browser's localStorage).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/upload")
async def upload_page() -> FileResponse:
    return FileResponse(STATIC / "upload.html", headers={"Cache-Control": "no-cache"})
