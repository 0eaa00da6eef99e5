"""The SQLite event store on real files in tmp_path: WAL, the outbox across
reopening (a process restart), leases, backoff, queries and `maskwatch events`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maskwatch.alerts import Alert
from maskwatch.cli import main, parse_since
from maskwatch.store import Store

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def alert(n: int, label: str = "no_mask", t: float = T0, source: str = "door") -> Alert:
    return Alert(id=f"a{n}", source=source, track_id=n, label=label, confidence=0.9, first_seen=t - 3, time=t,
                 video_time=12.5, box=(10, 20, 50, 70))


def test_wal_mode_and_schema_on_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.sqlite"
    with Store(path) as store:
        assert store.journal_mode == "wal"
        store.add(alert(1), ["log"])
        assert (tmp_path / "sub" / "events.sqlite-wal").exists()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is a property of the file
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"alerts", "outbox"}


def test_alert_and_snapshot_round_trip(tmp_path: Path) -> None:
    a = Alert(id="x", source="cam", track_id=2, label="incorrect", confidence=0.75, first_seen=T0, time=T0 + 4,
              video_time=4.0, box=(1.5, 2, 30, 40), snapshot=b"\xff\xd8\xff\xe0jpeg")
    with Store(tmp_path / "e.sqlite") as store:
        store.add(a, ["log"])
        store.add(a, ["log"])  # the same alert twice: still one
        (got,) = store.query()
    assert got.alert == a and got.deliveries[0].sink == "log" and got.delivered == 0


def test_outbox_survives_reopening_the_store(tmp_path: Path) -> None:
    path, clock = tmp_path / "e.sqlite", FakeClock()
    with Store(path, clock) as store:
        store.add(alert(1), ["log", "webhook:http://x"])
        store.add(alert(2), ["webhook:http://x"])
        (first,) = store.claim({"log"}, lease=30)
        store.delivered(first.alert.id, first.sink)
    with Store(path, clock) as store:  # a new process would see exactly this
        assert store.pending() == {"webhook:http://x": 2}
        rows = store.claim({"log", "webhook:http://x"}, lease=30)
        assert [(r.alert.id, r.sink, r.attempts) for r in rows] == [("a1", "webhook:http://x", 1),
                                                                    ("a2", "webhook:http://x", 1)]
        assert rows[0].alert == alert(1)


def test_alerts_stored_by_a_killed_process_are_all_in_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    script = textwrap.dedent(f"""
        import sys, time
        from maskwatch.alerts import Alert
        from maskwatch.store import Store
        store = Store({str(path)!r})
        for n in range(3):
            store.add(Alert(id=f"k{{n}}", source="cam", track_id=n, label="no_mask", confidence=0.9,
                            first_seen=0.0, time=1.0), ["webhook:http://x"])
        print("stored", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "stored"
    finally:
        proc.kill()  # SIGKILL: no cleanup, no close
        proc.wait(timeout=10)
    with Store(path) as store:
        assert [r.alert.id for r in store.claim({"webhook:http://x"}, lease=30)] == ["k0", "k1", "k2"]


def test_a_claimed_row_is_leased_and_a_failed_one_waits_for_its_retry(tmp_path: Path) -> None:
    path, clock = tmp_path / "e.sqlite", FakeClock()
    with Store(path, clock) as one, Store(path, clock) as other:
        one.add(alert(1), ["s"])
        assert len(one.claim({"s"}, lease=30)) == 1
        assert other.claim({"s"}, lease=30) == []  # another worker leaves it alone while it is being sent
        clock.now += 31
        (again,) = other.claim({"s"}, lease=30)  # the first worker died mid-send: retried after the lease
        assert again.attempts == 2
        other.failed("a1", "s", "HTTP 500", retry_in=4)
        assert other.next_due({"s"}) == clock.now + 4
        clock.now += 3.9
        assert other.claim({"s"}, lease=30) == []
        clock.now += 0.2
        (third,) = other.claim({"s"}, lease=30)
        other.delivered("a1", "s")
        clock.now += 1000
        assert other.claim({"s"}, lease=30) == [] and other.pending() == {}
        (stored,) = other.query()
    (status,) = stored.deliveries
    assert (third.attempts, status.attempts, status.last_error) == (3, 3, None)
    assert status.delivered_at == pytest.approx(T0 + 1035.1)


def test_rows_of_other_sinks_are_left_alone(tmp_path: Path) -> None:
    with Store(tmp_path / "e.sqlite") as store:
        store.add(alert(1), ["file:/a", "webhook:http://b"])
        assert [r.sink for r in store.claim({"webhook:http://b"}, lease=30)] == ["webhook:http://b"]
        assert store.pending({"file:/a"}) == {"file:/a": 1}


def test_query_by_time_and_label(tmp_path: Path) -> None:
    with Store(tmp_path / "e.sqlite") as store:
        for n, (label, t) in enumerate([("no_mask", T0), ("incorrect", T0 + 10), ("no_mask", T0 + 20)]):
            store.add(alert(n, label, t), [])
        assert [e.alert.id for e in store.query(since=T0 + 5)] == ["a1", "a2"]
        assert [e.alert.id for e in store.query(labels=["no_mask"])] == ["a0", "a2"]
        assert [e.alert.id for e in store.query(since=T0, until=T0 + 20, labels=["no_mask"])] == ["a0"]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(path)


# -- maskwatch events ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", T0 - 30), ("15m", T0 - 900), ("1h", T0 - 3600), ("2d", T0 - 172800), ("1.5h", T0 - 5400),
    ("2023-11-14T22:00:00Z", 1699999200.0), ("2023-11-14T23:00:00+01:00", 1699999200.0),
])
def test_since(text: str, expected: float) -> None:
    assert parse_since(text, T0) == expected


def test_since_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", T0)


def test_events_command_lists_recent_alerts(tmp_path: Path, capsys) -> None:
    import time

    path, now = tmp_path / "e.sqlite", time.time()
    with Store(path) as store:
        store.add(alert(1, "no_mask", now - 7200), ["log"])  # two hours ago
        store.add(alert(2, "incorrect", now - 60), ["log", "webhook:http://x"])
        store.add(alert(3, "no_mask", now - 30, source="yard"), ["log"])
        (row,) = store.claim({"log"}, lease=30, limit=1)
        store.delivered(row.alert.id, row.sink)

    assert main(["events", "--store", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "incorrect" in out[0] and "person #2" in out[0] and "delivered 0/2" in out[0]
    assert "yard" in out[1] and out[2].startswith("2 alerts since")

    assert main(["events", "--store", str(path), "--since", "3h", "--label", "no_mask", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["id"] for d in lines] == ["a1", "a3"]
    assert lines[0]["deliveries"][0]["sink"] == "log" and lines[0]["deliveries"][0]["delivered_at"].endswith("Z")
    assert lines[1]["deliveries"] == [{"sink": "log", "attempts": 0, "delivered_at": None, "error": None}]


def test_events_command_without_a_store(tmp_path: Path, capsys) -> None:
    assert main(["events", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "no event store" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()
    assert main(["events", "--store", str(tmp_path / "none.sqlite"), "--since", "soon"]) == 2
