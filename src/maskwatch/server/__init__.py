"""The HTTP service: `maskwatch serve` (FastAPI + uvicorn), the dashboard and live cameras.

Needs the `server` extra: pip install 'maskwatch[server]'.
"""

from maskwatch.server.cli import add_serve_parser, cmd_serve

__all__ = ["add_serve_parser", "cmd_serve"]
