"""Error answers shared by the routes' OpenAPI declarations."""

from __future__ import annotations

from typing import Any

from maskwatch.server.schemas import Problem


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these status codes, each with the Problem body."""
    text = {400: "Bad request", 401: "Missing or wrong API key", 404: "Not found", 409: "Conflict",
            413: "Body or image too large", 415: "Not a supported image", 422: "Invalid input",
            503: "Busy: the inference queue is full; retry after the Retry-After header's seconds"}
    return {code: {"model": Problem, "description": text[code]} for code in codes}


AUTH = problems(401)
