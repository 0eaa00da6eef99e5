"""One router per resource; `api_router` includes them all."""
