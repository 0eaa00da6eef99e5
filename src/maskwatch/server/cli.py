"""`maskwatch serve`: the argument parser and the command (uvicorn in this process)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_serve_parser(sub) -> None:
    from maskwatch.cli import port_number

    s = sub.add_parser("serve", help="HTTP API, dashboard and live cameras (needs the server extra)",
                       description="Options not given here are read from MASKWATCH_* environment variables "
                                   "(MASKWATCH_API_KEY, MASKWATCH_MAX_UPLOAD_BYTES, ...: see the README).")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 exposes the server to the network. Default: 127.0.0.1")
    s.add_argument("--port", type=port_number, default=8000, help="0 picks a free port. Default: 8000")
    s.add_argument("--data-dir", type=Path, default=None,
                   help="cameras.json and the event store. Default: $MASKWATCH_DATA_DIR or ./maskwatch-data")
    s.add_argument("--workers", type=int, default=None,
                   help="inference threads. Default: $MASKWATCH_WORKERS or one per core")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from maskwatch.server.app import create_app
        from maskwatch.server.settings import Settings
    except ImportError as exc:
        raise RuntimeError(f"the server needs its extra: pip install 'maskwatch[server]' ({exc})") from None
    given = {"data_dir": args.data_dir, "workers": args.workers}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    app = create_app(settings)
    log.info("serving on http://%s:%d", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False,
                timeout_graceful_shutdown=10)
    return 0
