"""Dependencies the routes list: the app state, its settings, and the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from maskwatch.server.cameras import Camera
from maskwatch.server.settings import Settings
from maskwatch.server.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.maskwatch


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's MASKWATCH_API_KEY")
_query = APIKeyQuery(name="api_key", auto_error=False,
                     description="the key as a query parameter, for <img> live streams that cannot send headers")
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <MASKWATCH_API_KEY> (Prometheus)")


def require_key(settings: SettingsDep, header: Annotated[str | None, Security(_header)],
                query: Annotated[str | None, Security(_query)],
                bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> None:
    """When the server has an API key, the request must carry it (in any of the three places)."""
    expected = settings.api_key
    if expected is None:
        return
    given = header or query or (bearer.credentials if bearer is not None else None)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong API key: send it as the X-API-Key header",
                            headers={"WWW-Authenticate": "Bearer"})


def get_camera(camera_id: str, state: StateDep) -> Camera:
    camera = state.cameras.get(camera_id)
    if camera is None:
        raise HTTPException(404, f"camera {camera_id!r} not found")
    return camera


CameraDep = Annotated[Camera, Depends(get_camera)]
