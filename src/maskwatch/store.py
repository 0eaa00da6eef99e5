"""The embedded event store: SQLite, the only module that touches the database.

Every alert is written here first, together with one outbox row per sink
it must reach, in one transaction. Delivery (sinks.py) then works from the
outbox only, so a sink that is down, or a process that is stopped or
killed, loses nothing: undelivered rows stay and are retried, in this run
with exponential backoff, or by the next run that has the same sinks.

Sending nothing twice: a worker *claims* due rows (one transaction pushes
their `next_attempt_at` a lease ahead, so another process sharing the file
leaves them alone), sends, then marks the row delivered in its own
transaction. Only a crash between a send and its mark can repeat a
delivery (after the lease); the alert id travels with it as the
idempotency key so the receiver can drop the repeat.

WAL mode lets `maskwatch events` read while a video run writes. Times are
UNIX seconds (REAL); `clock` is injectable for tests.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from maskwatch.alerts import Alert

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    first_seen REAL NOT NULL,
    time REAL NOT NULL,
    video_time REAL NOT NULL,
    box TEXT,
    snapshot BLOB
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time);
CREATE TABLE IF NOT EXISTS outbox (
    alert_id TEXT NOT NULL REFERENCES alerts (id),
    sink TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT,
    PRIMARY KEY (alert_id, sink)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at, next_attempt_at);
"""


@dataclass(frozen=True)
class Delivery:
    """One outbox row: `alert` still has to reach `sink`; `attempts` counts
    tries so far, this one included once claimed."""

    alert: Alert
    sink: str
    attempts: int


@dataclass(frozen=True)
class DeliveryStatus:
    sink: str
    attempts: int
    delivered_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class StoredAlert:
    """An alert as `maskwatch events` shows it, with where it has been delivered."""

    alert: Alert
    deliveries: tuple[DeliveryStatus, ...]

    @property
    def delivered(self) -> int:
        return sum(d.delivered_at is not None for d in self.deliveries)


class Store:
    """One connection to the event store file (create it if missing).

    A connection belongs to one thread at a time: the video loop and the
    delivery thread each open their own `Store` on the same file.
    """

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below), never implicit.
        self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("%s: SQLite refused WAL mode (%s); readers may wait for writers", self.path, mode)
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process crash
        self.db.execute("PRAGMA foreign_keys=ON")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: event store schema {version} is newer than this maskwatch "
                               f"({SCHEMA_VERSION})")
        with self._transaction():  # (executescript would commit on its own)
            for statement in filter(str.strip, SCHEMA.split(";")):
                self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock
        up front, so two writers wait (busy timeout) instead of deadlocking."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        return str(self.db.execute("PRAGMA journal_mode").fetchone()[0])

    # -- writing -------------------------------------------------------------

    def add(self, alert: Alert, sinks: Sequence[str]) -> None:
        """Store `alert` and queue it for each sink, all or nothing. Adding
        the same alert id again changes nothing."""
        now = self.clock()
        box = None if alert.box is None else json.dumps([float(v) for v in alert.box])
        with self._transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO alerts (id, source, track_id, label, confidence, first_seen, time, video_time,"
                " box, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (alert.id, alert.source, alert.track_id, alert.label, alert.confidence, alert.first_seen,
                 alert.time, alert.video_time, box, alert.snapshot))
            self.db.executemany(
                "INSERT OR IGNORE INTO outbox (alert_id, sink, next_attempt_at) VALUES (?, ?, ?)",
                [(alert.id, sink, now) for sink in sinks])

    def claim(self, sinks: Collection[str], lease: float, limit: int = 50) -> list[Delivery]:
        """Due undelivered rows for these sinks, oldest first, each pushed
        `lease` seconds ahead so no other worker takes it while it is sent."""
        if not sinks:
            return []
        now = self.clock()
        marks = ",".join("?" * len(sinks))
        with self._transaction():
            rows = self.db.execute(
                f"SELECT o.sink, o.attempts, a.* FROM outbox o JOIN alerts a ON a.id = o.alert_id"
                f" WHERE o.delivered_at IS NULL AND o.next_attempt_at <= ? AND o.sink IN ({marks})"
                f" ORDER BY o.next_attempt_at, a.time LIMIT ?", (now, *sinks, limit)).fetchall()
            self.db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE alert_id = ? AND sink = ?",
                [(now + lease, r["id"], r["sink"]) for r in rows])
        return [Delivery(_alert(r), r["sink"], r["attempts"] + 1) for r in rows]

    def delivered(self, alert_id: str, sink: str) -> None:
        """Mark one row delivered (its own transaction: a crash later keeps it)."""
        with self._transaction():
            self.db.execute("UPDATE outbox SET delivered_at = ?, last_error = NULL"
                            " WHERE alert_id = ? AND sink = ? AND delivered_at IS NULL",
                            (self.clock(), alert_id, sink))

    def failed(self, alert_id: str, sink: str, error: str, retry_in: float) -> None:
        """Record a failed try; the row is due again `retry_in` seconds from now."""
        with self._transaction():
            self.db.execute("UPDATE outbox SET next_attempt_at = ?, last_error = ?"
                            " WHERE alert_id = ? AND sink = ? AND delivered_at IS NULL",
                            (self.clock() + retry_in, error[:500], alert_id, sink))

    # -- reading -------------------------------------------------------------

    def pending(self, sinks: Collection[str] | None = None) -> dict[str, int]:
        """Undelivered rows per sink (only these sinks when given)."""
        rows = self.db.execute("SELECT sink, COUNT(*) FROM outbox WHERE delivered_at IS NULL GROUP BY sink")
        return {s: n for s, n in rows if sinks is None or s in sinks}

    def next_due(self, sinks: Collection[str]) -> float | None:
        """When the earliest undelivered row for these sinks is due (None: nothing pending)."""
        if not sinks:
            return None
        marks = ",".join("?" * len(sinks))
        row = self.db.execute(f"SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL"
                              f" AND sink IN ({marks})", tuple(sinks)).fetchone()
        return row[0]

    def query(self, since: float | None = None, until: float | None = None,
              labels: Collection[str] | None = None, limit: int | None = None) -> list[StoredAlert]:
        """Alerts raised in [since, until), oldest first, with their delivery state."""
        where, params = _alert_filter(None, since, until, labels)
        sql = "SELECT * FROM alerts" + where + " ORDER BY time, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        alerts = [_alert(r) for r in self.db.execute(sql, params)]
        out = []
        for a in alerts:
            rows = self.db.execute("SELECT sink, attempts, delivered_at, last_error FROM outbox WHERE alert_id = ?"
                                   " ORDER BY sink", (a.id,))
            out.append(StoredAlert(a, tuple(DeliveryStatus(*r) for r in rows)))
        return out


def _alert(row: sqlite3.Row) -> Alert:
    box = row["box"]
    return Alert(id=row["id"], source=row["source"], track_id=row["track_id"], label=row["label"],
                 confidence=row["confidence"], first_seen=row["first_seen"], time=row["time"],
                 video_time=row["video_time"], box=None if box is None else tuple(json.loads(box)),
                 snapshot=row["snapshot"])



# -- paged reading for the HTTP server (maskwatch serve) ----------------------


def _alert_filter(source: str | None, since: float | None, until: float | None,
                  labels: Collection[str] | None) -> tuple[str, list[object]]:
    where: list[str] = []
    params: list[object] = []
    for clause, value in (("source = ?", source), ("time >= ?", since), ("time < ?", until)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if labels:
        where.append(f"label IN ({','.join('?' * len(labels))})")
        params.extend(labels)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def alert_page(store: Store, source: str | None = None, since: float | None = None, until: float | None = None,
               labels: Collection[str] | None = None, limit: int = 50,
               offset: int = 0) -> tuple[int, list[tuple[Alert, bool]]]:
    """(matching alerts in all, one page of them newest first as (alert without its snapshot, has a
    snapshot)). Snapshots stay in the database: a page of 500 alerts must not load 500 JPEGs."""
    where, params = _alert_filter(source, since, until, labels)
    total = store.db.execute("SELECT COUNT(*) FROM alerts" + where, params).fetchone()[0]
    rows = store.db.execute(
        "SELECT id, source, track_id, label, confidence, first_seen, time, video_time, box, NULL AS snapshot,"
        " snapshot IS NOT NULL AS has_snapshot FROM alerts" + where + " ORDER BY time DESC, id LIMIT ? OFFSET ?",
        (*params, limit, offset)).fetchall()
    return int(total), [(_alert(r), bool(r["has_snapshot"])) for r in rows]


def alert_snapshot(store: Store, alert_id: str) -> bytes | None:
    row = store.db.execute("SELECT snapshot FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return None if row is None else row["snapshot"]


def alert_counts(store: Store, since: float | None = None) -> dict[str, int]:
    """Alerts per label (raised at or after `since` when given)."""
    where, params = _alert_filter(None, since, None, None)
    return {label: n for label, n in store.db.execute(
        "SELECT label, COUNT(*) FROM alerts" + where + " GROUP BY label", params)}


def prune_snapshots(store: Store, before: float) -> int:
    """Drop the face snapshots of alerts raised before `before` (the alerts stay); returns how many."""
    with store._transaction():
        cur = store.db.execute("UPDATE alerts SET snapshot = NULL WHERE snapshot IS NOT NULL AND time < ?",
                               (before,))
    return cur.rowcount
