"""Sinks and outbox delivery against real receivers: a webhook server on
127.0.0.1 that fails before it works, a shell command, a JSON-lines file,
and a mosquitto broker (skipped where mosquitto or paho-mqtt is missing)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from maskwatch.alerts import Alert
from maskwatch.sinks import (
    CommandSink,
    DeliveryConfig,
    DeliveryError,
    Dispatcher,
    FileSink,
    LogSink,
    MqttSink,
    WebhookSink,
    make_sinks,
)
from maskwatch.store import Store
from webhook_helpers import Receiver, free_port

FAST = DeliveryConfig(backoff=0.02, max_backoff=0.1, lease=5.0, flush_seconds=3.0)


def alert(n: int, snapshot: bytes | None = None) -> Alert:
    return Alert(id=f"alert-{n}", source="door", track_id=n, label="no_mask", confidence=0.9,
                 first_seen=1_700_000_000.0, time=1_700_000_003.0, video_time=3.0, box=(1, 2, 3, 4),
                 snapshot=snapshot)


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(failures: int = 0, port: int = 0, status: int = 500) -> Receiver:
        made.append(Receiver(failures, port, status).start())
        return made[-1]

    yield make
    for r in made:
        r.stop()


def stored(path: Path, alerts: list[Alert], sinks: list[str]) -> Path:
    with Store(path) as store:
        for a in alerts:
            store.add(a, sinks)
    return path


def test_webhook_that_fails_then_works_gets_every_alert_exactly_once(tmp_path: Path, receiver) -> None:
    hook = receiver(failures=4)
    sink = WebhookSink(hook.url)
    path = stored(tmp_path / "e.sqlite", [alert(n) for n in range(3)], [sink.name])
    dispatcher = Dispatcher(path, [sink], FAST)
    assert dispatcher.close() == 0  # the final flush waits out the backoffs
    assert len(hook.requests) == 3 + 4
    assert sorted(hook.keys) == ["alert-0", "alert-1", "alert-2"]  # each once, keyed by its id
    assert all(h["Idempotency-Key"] == b["id"] for h, b in hook.requests)
    assert hook.accepted[0]["label"] == "no_mask" and hook.requests[0][0]["Content-Type"] == "application/json"
    with Store(path) as store:
        assert store.pending() == {}
        assert sum(d.attempts for e in store.query() for d in e.deliveries) == 7


def test_webhook_that_refuses_connections_for_a_while(tmp_path: Path, receiver) -> None:
    port = free_port()
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", timeout=2)
    path = stored(tmp_path / "e.sqlite", [alert(1), alert(2)], [sink.name])
    dispatcher = Dispatcher(path, [sink], FAST)
    assert dispatcher.deliver_due() == 0 and dispatcher.failures == 2
    with Store(path) as store:
        assert "refused" in store.query()[0].deliveries[0].last_error.lower()
    hook = receiver(port=port)  # the endpoint comes up
    assert dispatcher.drain(3.0) == 0
    dispatcher.close()
    assert sorted(hook.keys) == ["alert-1", "alert-2"] and len(hook.requests) == 2


def test_a_restart_delivers_what_the_last_run_left_and_nothing_twice(tmp_path: Path, receiver) -> None:
    hook = receiver(failures=10**6)  # down for the whole first run
    sink = WebhookSink(hook.url)
    path = stored(tmp_path / "e.sqlite", [alert(1), alert(2)], [sink.name, "log"])
    first = Dispatcher(path, [sink, LogSink()], FAST)
    assert first.close(flush_seconds=0.3) == 2  # the run ends with the webhook still down
    assert hook.accepted == []
    hook.failures = 0  # the endpoint recovers; a new process starts with the same sinks
    second = Dispatcher(path, [WebhookSink(hook.url), LogSink()], FAST)
    assert second.close() == 0
    assert sorted(hook.keys) == ["alert-1", "alert-2"]
    third = Dispatcher(path, [WebhookSink(hook.url), LogSink()], FAST)  # and again: nothing left to send
    assert third.close() == 0 and sorted(hook.keys) == ["alert-1", "alert-2"]


def test_a_send_cut_off_by_a_crash_is_repeated_with_the_same_key(tmp_path: Path, receiver) -> None:
    hook = receiver()
    sink = WebhookSink(hook.url)
    path = stored(tmp_path / "e.sqlite", [alert(1)], [sink.name])
    with Store(path) as store:
        (row,) = store.claim({sink.name}, lease=0.2)
        sink.send(row.alert)  # the process dies here, before marking the row delivered
    later = lambda: time.time() + 1  # noqa: E731  (the next run starts after the lease ran out)
    assert Dispatcher(path, [sink], FAST, clock=later).close() == 0
    assert hook.keys == ["alert-1", "alert-1"]  # at least once; the key lets the receiver drop the repeat


def test_background_delivery_is_woken_by_a_new_alert(tmp_path: Path, receiver) -> None:
    hook = receiver()
    sink = WebhookSink(hook.url)
    path = tmp_path / "e.sqlite"
    dispatcher = Dispatcher(path, [sink], FAST).start()
    try:
        with Store(path) as store:
            store.add(alert(5), [sink.name])
        dispatcher.wake()
        deadline = time.monotonic() + 5
        while not hook.accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [b["id"] for b in hook.accepted] == ["alert-5"]
    finally:
        assert dispatcher.close() == 0


def test_webhook_sends_the_snapshot_as_base64(receiver) -> None:
    hook = receiver()
    WebhookSink(hook.url).send(alert(1, snapshot=b"\xff\xd8\xff"))
    assert hook.accepted[0]["snapshot_jpeg"] == "/9j/"


def test_webhook_errors_name_the_status(receiver) -> None:
    hook = receiver(failures=1)
    with pytest.raises(DeliveryError, match="HTTP 500"):
        WebhookSink(hook.url).send(alert(1))
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://example.org/x")


def test_a_redirected_webhook_is_an_error_not_a_delivery(receiver) -> None:
    hook = receiver(failures=1, status=302)
    with pytest.raises(DeliveryError, match="HTTP 302 .* to http://127.0.0.1:.*/hook/moved"):
        WebhookSink(hook.url).send(alert(1))
    assert len(hook.requests) == 1 and hook.keys == []  # not followed as a GET


RECORD = """
import json, os, sys
alert = json.load(sys.stdin)
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps([os.environ["MASKWATCH_ALERT_ID"], alert["id"], alert["track_id"]]) + "\\n")
"""


def test_command_sink_gets_the_alert_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.jsonl"
    sink = CommandSink([sys.executable, "-c", RECORD, str(out)])
    sink.send(alert(3))
    assert json.loads(out.read_text()) == ["alert-3", "alert-3", 3]
    assert sink.name.startswith("command:") and str(out) in sink.name


def test_command_sink_failures_are_retried(tmp_path: Path) -> None:
    flag, out = tmp_path / "ok", tmp_path / "got.jsonl"
    script = f"import pathlib, sys\nif not pathlib.Path({str(flag)!r}).exists(): sys.exit(3)\n" + RECORD
    sink = CommandSink([sys.executable, "-c", script, str(out)])
    path = stored(tmp_path / "e.sqlite", [alert(1)], [sink.name])
    dispatcher = Dispatcher(path, [sink], FAST)
    assert dispatcher.deliver_due() == 0
    with Store(path) as store:
        assert "exit status 3" in store.query()[0].deliveries[0].last_error
    flag.touch()
    assert dispatcher.close() == 0
    assert [json.loads(line)[0] for line in out.read_text().splitlines()] == ["alert-1"]


def test_command_sink_timeout_and_missing_program(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="no exit within"):
        CommandSink([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3).send(alert(1))
    with pytest.raises(DeliveryError, match="no-such-program"):
        CommandSink([str(tmp_path / "no-such-program")]).send(alert(1))


def test_file_and_log_sinks(tmp_path: Path, caplog) -> None:
    sink = FileSink(tmp_path / "alerts" / "a.jsonl")
    path = stored(tmp_path / "e.sqlite", [alert(1), alert(2)], [sink.name, "log"])
    with caplog.at_level(logging.WARNING, logger="maskwatch.sinks"):
        assert Dispatcher(path, [sink, LogSink()], FAST).close() == 0
    lines = [json.loads(line) for line in (tmp_path / "alerts" / "a.jsonl").read_text().splitlines()]
    assert [d["id"] for d in lines] == ["alert-1", "alert-2"] and lines[0]["time"] == "2023-11-14T22:13:23.000Z"
    assert sum("ALERT door: person #2 no_mask" in r.getMessage() for r in caplog.records) == 1


def test_make_sinks_from_cli_options(tmp_path: Path) -> None:
    sinks = make_sinks(["http://a/x", "http://b/y", "http://a/x"], tmp_path / "f.jsonl", "notify-send 'mask alert'")
    assert [s.name for s in sinks] == ["log", "webhook:http://a/x", "webhook:http://b/y",
                                       f"file:{(tmp_path / 'f.jsonl').resolve()}", "command:notify-send 'mask alert'"]
    assert sinks[-1].argv == ["notify-send", "mask alert"]


def test_backoff_doubles_up_to_its_cap() -> None:
    cfg = DeliveryConfig(backoff=1, max_backoff=10)
    assert [cfg.retry_delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


# -- MQTT: a real mosquitto broker started by the test -----------------------------------------------


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)


class Broker:
    """mosquitto on 127.0.0.1:`port` (anonymous), started and stopped by the test."""

    def __init__(self, binary: str, folder: Path, port: int) -> None:
        self.binary, self.port = binary, port
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            time.sleep(0.02)
        raise AssertionError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class Subscriber:
    """Collects what arrives on `topic`."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = lambda c, u, msg: self.messages.append(json.loads(msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "subscription not acknowledged"

    def wait_for(self, n: int, seconds: float = 10) -> list[dict]:
        deadline = time.monotonic() + seconds
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'maskwatch[mqtt]')")
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto not installed (Debian: apt-get install mosquitto)")
    b = Broker(binary, tmp_path, free_port())
    yield b
    b.stop()


def test_mqtt_broker_down_then_up_gets_every_alert_once(tmp_path: Path, broker: Broker) -> None:
    sink = MqttSink(f"mqtt://127.0.0.1:{broker.port}/maskwatch/alerts", timeout=3)
    path = stored(tmp_path / "e.sqlite", [alert(1), alert(2)], [sink.name])
    dispatcher = Dispatcher(path, [sink], FAST)
    assert dispatcher.deliver_due() == 0  # no broker yet: refused, kept for a retry
    broker.start()
    sub = Subscriber(broker.port, "maskwatch/#")
    try:
        assert dispatcher.close() == 0
        got = sub.wait_for(2)
    finally:
        sub.close()
    assert sorted(m["id"] for m in got) == ["alert-1", "alert-2"] and got[0]["label"] == "no_mask"


def test_mqtt_url_forms() -> None:
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed")
    sink = MqttSink("mqtt://bob:s%40cret@broker.local/site/door%201")
    assert (sink.host, sink.port, sink.topic, sink.auth) == ("broker.local", 1883, "site/door 1", ("bob", "s@cret"))
    assert sink.name == "mqtt:mqtt://broker.local:1883/site/door%201"  # the outbox key holds no password
    for bad in ("mqtt://host", "http://host/t", "mqtt://host/a/#", "mqtt://host/a/+/b"):
        with pytest.raises(ValueError, match="mqtt://"):
            MqttSink(bad)


def test_deliver_command_sends_what_a_run_left_behind(tmp_path: Path, receiver, capsys) -> None:
    """`maskwatch deliver`: the outbox of a run whose webhook was down is sent
    by a later, standalone process; rows of sinks it is not given are kept."""
    from maskwatch.cli import main

    hook = receiver()
    other = "webhook:http://127.0.0.1:9/elsewhere"
    path = stored(tmp_path / "e.sqlite", [alert(1), alert(2)], [WebhookSink(hook.url).name, other])
    assert main(["deliver", "--store", str(path), "--alert-webhook", hook.url, "--for", "5"]) == 0
    out = capsys.readouterr().out
    assert f"2 for {other} (not named here: kept)" in out
    assert "delivered 2, failed tries 0, still waiting 0" in out
    assert sorted(hook.keys) == ["alert-1", "alert-2"]
    with Store(path) as db:
        assert db.pending() == {other: 2}
    assert main(["deliver", "--store", str(path), "--alert-webhook", hook.url, "--for", "0"]) == 0
    assert "delivered 0" in capsys.readouterr().out and len(hook.keys) == 2  # nothing sent twice


def test_deliver_command_without_a_store(tmp_path: Path, capsys) -> None:
    from maskwatch.cli import main

    assert main(["deliver", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "no event store at" in capsys.readouterr().err


def test_deliver_command_gives_up_for_now_when_the_sink_stays_down(tmp_path: Path, receiver, capsys) -> None:
    from maskwatch.cli import main

    hook = receiver(failures=10**6)
    path = stored(tmp_path / "e.sqlite", [alert(1)], [WebhookSink(hook.url).name])
    assert main(["deliver", "--store", str(path), "--alert-webhook", hook.url, "--for", "0.5"]) == 1
    assert "still waiting 1" in capsys.readouterr().out
    with Store(path) as db:
        assert sum(db.pending().values()) == 1  # kept for the next try


def test_deliver_follow_sends_what_another_process_stores(tmp_path: Path, receiver) -> None:
    """`maskwatch deliver --follow` beside a camera process: an alert stored
    later by someone else arrives within seconds; SIGTERM stops it cleanly."""
    from video_helpers import sigterm_when

    hook = receiver()
    path = stored(tmp_path / "e.sqlite", [alert(1)], [WebhookSink(hook.url).name])
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "deliver", "--store", str(path),
                             "--alert-webhook", hook.url, "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not hook.keys and time.monotonic() < deadline:
            time.sleep(0.05)
        stored(path, [alert(2)], [WebhookSink(hook.url).name])
        out, err = sigterm_when(proc, lambda: len(hook.keys) >= 2, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert hook.keys == ["alert-1", "alert-2"], err
    assert proc.returncode == 0 and "still waiting 0" in out
