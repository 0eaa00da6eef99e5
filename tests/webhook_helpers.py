"""A webhook endpoint on 127.0.0.1 for the alert tests (http.server on a thread)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers `status` (HTTP 500, or a
    redirect to .../moved) to its first `failures` requests, then 200; it
    records every request and the idempotency keys of those it accepted."""

    def __init__(self, failures: int = 0, port: int = 0, status: int = 500) -> None:
        self.failures, self.port, self.status = failures, port, status
        self.requests: list[tuple[dict, dict]] = []  # (headers, JSON body) of each request
        self.accepted: list[dict] = []
        self.keys: list[str] = []
        """Idempotency keys of the accepted requests."""
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((dict(self.headers), body))
                fail = len(owner.requests) <= owner.failures
                if not fail:
                    owner.accepted.append(body)
                    owner.keys.append(self.headers["Idempotency-Key"])
                self.send_response(owner.status if fail else 200)
                if fail and 300 <= owner.status < 400:
                    self.send_header("Location", owner.url + "/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
