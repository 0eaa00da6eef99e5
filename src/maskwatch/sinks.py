"""Where alerts go: log, JSON-lines file, webhook, shell command, MQTT; and the
`Dispatcher` that delivers them from the store's outbox.

A sink has one method, `send(alert)`, which returns when the alert has
arrived and raises `DeliveryError` (or anything else) when it has not. Its
`name` is the outbox key, stable across runs (`webhook:<url>`,
`file:<absolute path>`...): a later run with the same sink delivers what an
earlier run left pending. Every payload is the alert's JSON (`Alert.to_dict`)
whose `id` is the idempotency key; the webhook also sends it as the
`Idempotency-Key` header, the command gets it as `MASKWATCH_ALERT_ID`.

The dispatcher runs on its own thread with its own store connection, so a
slow or dead webhook never holds up the video loop. Failed deliveries are
retried with exponential backoff (`DeliveryConfig`), without a limit: an
alert is dropped by nothing but a successful delivery.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from maskwatch.alerts import Alert
from maskwatch.store import Store

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """A sink could not deliver an alert (it is retried)."""


def payload(alert: Alert) -> bytes:
    return json.dumps(alert.to_dict()).encode("utf-8")


class Sink(ABC):
    """One destination for alerts; settings in `__init__`, the alert in `send`."""

    name: str

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver `alert`; return only once it has arrived, raise otherwise."""


class LogSink(Sink):
    """A WARNING log line per alert (the console of `maskwatch video`)."""

    name = "log"

    def send(self, alert: Alert) -> None:
        log.warning("ALERT %s: person #%d %s (vote %.0f%%) at %.1f s of the video, since %s [%s]", alert.source,
                    alert.track_id, alert.label, 100 * alert.confidence, alert.video_time,
                    time.strftime("%H:%M:%S", time.localtime(alert.first_seen)), alert.id)


class FileSink(Sink):
    """Appends one JSON line per alert and syncs it to disk before counting
    it delivered. A crash between the write and the outbox mark can repeat a
    line; readers drop repeats by `id`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.name = f"file:{self.path}"

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fh.write(payload(alert) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect of a POST as a GET without the body and
    count its 200 as delivered; a redirect is an error to fix instead."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class WebhookSink(Sink):
    """JSON POST to `url`; any 2xx status is delivered, anything else (an
    HTTP error or redirect, a refused connection, a timeout) is retried
    later. urllib from the standard library: one POST needs no client
    library."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {url!r}")
        self.url, self.timeout = url, timeout
        self.name = f"webhook:{url}"

    def send(self, alert: Alert) -> None:
        request = urllib.request.Request(self.url, data=payload(alert), method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": alert.id, "User-Agent": "maskwatch"})
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            moved = f" to {exc.headers['Location']} (give that URL)" if exc.headers.get("Location") else ""
            raise DeliveryError(f"HTTP {exc.code} {exc.reason}{moved}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(str(getattr(exc, "reason", exc))) from exc


class CommandSink(Sink):
    """Runs `argv` (no shell) with the alert JSON on stdin and its id in
    `MASKWATCH_ALERT_ID`; exit status 0 is delivered. A command running past
    `timeout` seconds is killed and retried."""

    def __init__(self, argv: Sequence[str], timeout: float = 10.0) -> None:
        if not argv:
            raise ValueError("alert command is empty")
        self.argv, self.timeout = list(argv), timeout
        self.name = f"command:{shlex.join(self.argv)}"

    def send(self, alert: Alert) -> None:
        env = {**os.environ, "MASKWATCH_ALERT_ID": alert.id}
        try:
            done = subprocess.run(self.argv, input=payload(alert), capture_output=True, timeout=self.timeout,
                                  env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DeliveryError(f"{self.argv[0]}: no exit within {self.timeout} s") from exc
        except OSError as exc:
            raise DeliveryError(f"{self.argv[0]}: {exc}") from exc
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
            raise DeliveryError(f"{self.argv[0]}: exit status {done.returncode}" + (f": {tail}" if tail else ""))


class MqttSink(Sink):
    """Publishes the alert JSON to an MQTT broker with QoS 1, retain off;
    delivered once the broker acknowledges (PUBACK). `url` is
    `mqtt://[user:password@]host[:port]/topic` (port 1883 by default).
    One short connection per alert: alerts are rare, and a broker that
    restarts between them needs no reconnect logic here. Needs paho-mqtt
    (`pip install 'maskwatch[mqtt]'`)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        topic = urllib.parse.unquote(parts.path.lstrip("/"))
        wildcard = "+" in topic or "#" in url or parts.query  # a wildcard topic is for subscribing
        if parts.scheme != "mqtt" or not parts.hostname or not topic or wildcard:
            raise ValueError(f"MQTT sink must be mqtt://[user:password@]host[:port]/topic, got {url!r}")
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise ValueError("--alert-mqtt needs paho-mqtt: pip install 'maskwatch[mqtt]'") from None
        self.host, self.port, self.topic = parts.hostname, parts.port or 1883, topic
        self.auth = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")) \
            if parts.username else None
        self.timeout = timeout
        shown = parts._replace(netloc=f"{self.host}:{self.port}").geturl()  # no password in the outbox key
        self.name = f"mqtt:{shown}"

    def send(self, alert: Alert) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"maskwatch-{alert.id[:12]}")
        if self.auth is not None:
            client.username_pw_set(*self.auth)
        try:
            client.connect(self.host, self.port, keepalive=max(5, round(self.timeout)))
        except OSError as exc:
            raise DeliveryError(f"{self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        try:
            info = client.publish(self.topic, payload(alert), qos=1)
            info.wait_for_publish(self.timeout)  # queued until CONNACK, sent, then waits for PUBACK
            if not info.is_published():
                raise DeliveryError(f"{self.host}:{self.port}: no acknowledgement within {self.timeout} s "
                                    "(broker refused the login or the topic?)")
        except (ValueError, RuntimeError) as exc:
            raise DeliveryError(f"{self.host}:{self.port}: {exc}") from exc
        finally:
            client.disconnect()
            client.loop_stop()


@dataclass(frozen=True)
class DeliveryConfig:
    """How the outbox is worked off.

    `backoff`: seconds before the first retry of a failed delivery, doubled
    after each further failure up to `max_backoff` (a sink back after an
    outage gets its backlog within `max_backoff`). `lease`: how long a row
    being sent is reserved; longer than any sink's timeout, and the delay
    before a row whose process was killed mid-send is tried again.
    `flush_seconds`: at the end of a run (or Ctrl-C), how long to keep
    trying before leaving the rest to the next run. `batch`: rows claimed
    per pass. `idle_poll`: with nothing due, how often to look for rows
    added by another process (this process's own alerts wake it at once).
    """

    backoff: float = 1.0
    max_backoff: float = 60.0
    lease: float = 30.0
    flush_seconds: float = 5.0
    batch: int = 50
    idle_poll: float = 60.0

    def __post_init__(self) -> None:
        if self.backoff <= 0 or self.max_backoff < self.backoff:
            raise ValueError(f"need 0 < backoff <= max_backoff, got {self.backoff}, {self.max_backoff}")
        if self.lease <= 0 or self.flush_seconds < 0 or self.batch < 1 or self.idle_poll <= 0:
            raise ValueError("lease and idle_poll must be > 0, flush_seconds >= 0, batch >= 1")

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed try (1, 2, ...)."""
        return min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1))


class Dispatcher:
    """Delivers outbox rows of `sinks` from the store at `store_path`.

    `deliver_due` makes one pass in the caller's thread; `start` runs passes
    on a thread, woken by `wake` (a new alert) or when a retry falls due;
    `close` stops it after a last flush and says how many rows are left.
    """

    def __init__(self, store_path: Path, sinks: Sequence[Sink], config: DeliveryConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"two sinks with one name: {names}")
        self.sinks = {s.name: s for s in sinks}
        self.config = config or DeliveryConfig()
        self.clock = clock
        self.store = Store(store_path, clock=clock)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failures = 0
        others = {s: n for s, n in self.store.pending().items() if s not in self.sinks}
        if others:
            log.warning("%s: %d alert deliveries pending for sinks not configured in this run (kept for a run "
                        "that has them): %s", store_path, sum(others.values()), ", ".join(sorted(others)))

    def deliver_due(self) -> int:
        """Send every row due now; returns how many were delivered."""
        done = 0
        with self._lock:
            while True:
                batch = self.store.claim(self.sinks, self.config.lease, self.config.batch)
                for row in batch:
                    done += self._deliver(row.alert, row.sink, row.attempts)
                if len(batch) < self.config.batch:
                    return done

    def _deliver(self, alert: Alert, sink: str, attempts: int) -> int:
        try:
            self.sinks[sink].send(alert)
        except Exception as exc:  # any failure of a sink is retried, never fatal to the run
            delay = self.config.retry_delay(attempts)
            self.failures += 1
            self.store.failed(alert.id, sink, str(exc) or type(exc).__name__, delay)
            log.warning("alert %s -> %s failed (try %d): %s; retry in %.3g s", alert.id, sink, attempts, exc, delay)
            return 0
        self.store.delivered(alert.id, sink)
        self.delivered += 1
        log.info("alert %s -> %s delivered (try %d)", alert.id, sink, attempts)
        return 1

    def pending(self) -> int:
        with self._lock:
            return sum(self.store.pending(self.sinks).values())

    def _wait(self, deadline: float | None) -> bool:
        """Sleep until the next row is due, `wake`, or `deadline`; False once nothing is pending or past it."""
        with self._lock:
            due = self.store.next_due(self.sinks)
        now = self.clock()
        if due is None and deadline is not None:
            return False
        until = due if due is not None else now + self.config.idle_poll
        if deadline is not None:
            if now >= deadline:
                return False
            until = min(until, deadline)
        self._wake.wait(max(0.0, until - now))
        return True

    def drain(self, seconds: float) -> int:
        """Deliver until nothing is pending or `seconds` have passed (waiting
        out backoffs); returns the rows still pending."""
        deadline = self.clock() + seconds
        while True:
            self._wake.clear()  # before the pass: a wake during it makes the next wait return at once
            self.deliver_due()
            if not self._wait(deadline):
                return self.pending()

    def start(self) -> Dispatcher:
        if self._thread is None and self.sinks:
            self._thread = threading.Thread(target=self._run, name="alert delivery", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """A new alert is in the outbox: deliver it now."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a wake during it makes the next wait return at once
            try:
                self.deliver_due()
            except Exception:  # a locked or broken database: log, try again later, keep the run alive
                log.exception("alert delivery pass failed; retrying")
                self._wake.wait(self.config.backoff)
            if self._stop.is_set():
                return
            self._wait(None)

    def close(self, flush_seconds: float | None = None) -> int:
        """Stop the thread, then keep delivering for up to `flush_seconds`
        (default: the config's); returns the rows left for the next run."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            left = self.drain(self.config.flush_seconds if flush_seconds is None else flush_seconds)
        finally:
            self.store.close()
        if left:
            log.warning("%d alert deliveries still pending; a later run with the same sinks sends them", left)
        return left


def make_sinks(webhooks: Sequence[str] = (), file: Path | None = None, command: str | None = None,
               mqtt: Sequence[str] = (), log_alerts: bool = True, timeout: float = 5.0) -> list[Sink]:
    """The sinks the CLI options name; `command` is split like a shell would (no shell runs it)."""
    sinks: list[Sink] = [LogSink()] if log_alerts else []
    sinks += [WebhookSink(url, timeout) for url in dict.fromkeys(webhooks)]
    sinks += [MqttSink(url, timeout) for url in dict.fromkeys(mqtt)]
    if file is not None:
        sinks.append(FileSink(file))
    if command:
        sinks.append(CommandSink(shlex.split(command), timeout=2 * timeout))
    return sinks
