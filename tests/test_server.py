"""The HTTP service with the real detector and classifier on the committed example photos.

TestClient drives the app in-process for the request/response contract;
the live camera, its MJPEG stream and alerts run on a real uvicorn on
loopback, fed by the MJPEG test server of video_helpers.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install '.[server]'")

from fastapi.testclient import TestClient  # noqa: E402

from maskwatch.alerts import Alert  # noqa: E402
from maskwatch.pipeline import Pipeline, PipelineConfig  # noqa: E402
from maskwatch.server.app import create_app  # noqa: E402
from maskwatch.server.cameras import CameraError, check_source  # noqa: E402
from maskwatch.server.pool import InferencePool, PoolFull  # noqa: E402
from maskwatch.server.settings import Settings  # noqa: E402
from maskwatch.store import Store  # noqa: E402
from server_helpers import LiveServer  # noqa: E402
from video_helpers import EXAMPLES, MjpegServer, jpeg, pan  # noqa: E402
from webhook_helpers import Receiver  # noqa: E402

PHOTO = EXAMPLES / "maksssksksss787.png"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def client(data_dir: Path):
    settings = Settings(data_dir=data_dir, workers=2, queue_size=4, max_upload_bytes=2_000_000,
                        max_pixels=5_000_000, max_batch=4)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(PipelineConfig(threads=1))


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds one compressed row: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(
        b"IEND", b"")


# -- detect ---------------------------------------------------------------------


def test_health_and_openapi(client: TestClient) -> None:
    r = client.get("/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["workers"] == 2
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in ("/v1/detect", "/v1/detect/batch", "/v1/health", "/v1/cameras", "/v1/cameras/{camera_id}",
                 "/v1/cameras/{camera_id}/stream", "/v1/events", "/v1/stats", "/metrics"):
        assert path in paths, path
    body = paths["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/jpeg", "application/octet-stream"} <= set(body)
    assert "image/jpeg" in paths["/v1/detect"]["post"]["responses"]["200"]["content"]
    assert {"413", "415", "503"} <= set(paths["/v1/detect"]["post"]["responses"])


@pytest.mark.parametrize("how", ["raw", "multipart"])
def test_detect_matches_the_pipeline(client: TestClient, pipeline: Pipeline, how: str) -> None:
    data = PHOTO.read_bytes()
    if how == "raw":
        r = client.post("/v1/detect", content=data, headers={"Content-Type": "application/octet-stream"})
    else:
        r = client.post("/v1/detect", files={"file": ("../../etc/x/" + PHOTO.name, data, "text/plain")})
    assert r.status_code == 200, r.text
    got = r.json()
    expected = pipeline.analyze(data, name="upload" if how == "raw" else PHOTO.name).to_dict()
    assert got == expected  # same schema and same faces as the library / CLI
    labels = [f["label"] for f in got["faces"]]
    assert labels.count("no_mask") >= 1 and labels.count("mask") >= 5


def test_detect_annotated_jpeg(client: TestClient) -> None:
    r = client.post("/v1/detect?annotated=true", content=PHOTO.read_bytes())
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and img.size == Image.open(PHOTO).size
    assert int(r.headers["x-faces"]) >= 6


def test_detect_json_with_the_annotated_image(client: TestClient) -> None:
    """One inference for the upload page: the JSON result and the picture together."""
    plain = client.post("/v1/detect", content=PHOTO.read_bytes()).json()
    r = client.post("/v1/detect?with_image=true", content=PHOTO.read_bytes())
    assert r.status_code == 200
    both = r.json()
    img = Image.open(io.BytesIO(base64.b64decode(both.pop("annotated_jpeg"))))
    assert img.format == "JPEG" and img.size == Image.open(PHOTO).size
    assert both == plain and "annotated_jpeg" not in plain


def test_content_is_sniffed_not_trusted(client: TestClient) -> None:
    png = PHOTO.read_bytes()
    assert client.post("/v1/detect", content=png, headers={"Content-Type": "image/jpeg"}).status_code == 200
    r = client.post("/v1/detect", content=b"<html>not a picture</html>", headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and "not an image" in r.json()["detail"]
    gif = io.BytesIO()
    Image.new("RGB", (32, 32)).save(gif, "GIF")
    r = client.post("/v1/detect", content=gif.getvalue())
    assert r.status_code == 415 and "GIF" in r.json()["detail"]
    truncated = jpeg(np.full((200, 200, 3), 90, np.uint8))[:400]
    r = client.post("/v1/detect", content=truncated)
    assert r.status_code == 422 and "Truncated" in r.json()["detail"]
    r = client.post("/v1/detect", content=b"")
    assert r.status_code == 400 and "empty" in r.json()["detail"]


def test_decompression_bomb_and_big_bodies_get_413(client: TestClient) -> None:
    bomb = png_header(30_000, 30_000)
    assert len(bomb) < 200
    r = client.post("/v1/detect", content=bomb)
    assert r.status_code == 413 and "900000000 pixels" in r.json()["detail"]
    r = client.post("/v1/detect", content=png_header(100_000, 100_000))  # past Pillow's own bomb limit too
    assert r.status_code == 413
    r = client.post("/v1/detect", content=b"\xff" * 2_000_001)
    assert r.status_code == 413 and "over the limit of 2000000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted while the body streams in
        for _ in range(30):
            yield b"\0" * 100_000

    r = client.post("/v1/detect", content=chunks())
    assert r.status_code == 413
    r = client.post("/v1/detect", files={"file": ("big.png", b"\0" * 2_100_000)})  # multipart over the limit
    assert r.status_code == 413
    assert client.get("/v1/health").status_code == 200  # and the server is fine


def test_batch(client: TestClient) -> None:
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in sorted(EXAMPLES.glob("*.png"))[:2]]
    files.append(("files", ("notes.txt", b"hello", "text/plain")))
    r = client.post("/v1/detect/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["image"] for x in results] == [files[0][1][0], files[1][1][0], "notes.txt"]
    assert [x["status"] for x in results] == [200, 200, 415]
    assert results[0]["faces"] and results[2]["faces"] == [] and "not an image" in results[2]["error"]
    too_many = [("files", (f"{i}.png", PHOTO.read_bytes())) for i in range(5)]
    assert client.post("/v1/detect/batch", files=too_many).status_code in (400, 413)
    assert client.post("/v1/detect/batch", content=PHOTO.read_bytes()).status_code == 415


def test_full_queue_gets_503_with_retry_after(client: TestClient) -> None:
    pool = client.app.state.maskwatch.pool
    release = threading.Event()
    held = [pool.submit(lambda _p: release.wait(30)) for _ in range(pool.capacity)]
    try:
        r = client.post("/v1/detect", content=PHOTO.read_bytes())
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
    finally:
        release.set()
    for f in held:
        f.result(10)
    assert client.post("/v1/detect", content=PHOTO.read_bytes()).status_code == 200
    assert client.get("/v1/stats").json()["images"]["rejected"] >= 1


def test_pool_bounds_its_queue() -> None:
    pool = InferencePool(PipelineConfig(), workers=1, queue_size=1).start()
    try:
        gate = threading.Event()
        first, second = pool.submit(lambda _p: gate.wait(10)), pool.submit(lambda _p: "queued")
        with pytest.raises(PoolFull):
            pool.submit(lambda _p: "one too many")
        gate.set()
        assert first.result(10) is True and second.result(10) == "queued" and pool.pending == 0
    finally:
        pool.close()


def test_stats_and_metrics(client: TestClient) -> None:
    client.post("/v1/detect", content=PHOTO.read_bytes())
    stats = client.get("/v1/stats").json()
    assert stats["images"]["analysed"] >= 1 and stats["faces"]["mask"] >= 1 and stats["workers"] == 2
    text = client.get("/metrics").text
    assert 'maskwatch_http_requests_total{method="POST",route="/v1/detect",status="200"}' in text
    assert "maskwatch_inference_seconds_bucket" in text and 'maskwatch_faces_total{label="mask"}' in text
    client.get("/v1/no/such/path/12345")
    assert "/v1/no/such" not in client.get("/metrics").text  # raw paths never become label values


# -- security --------------------------------------------------------------------


def test_api_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=1, api_key="s3cret-key")
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/health").status_code == 200
        for method, path in (("get", "/v1/stats"), ("get", "/v1/cameras"), ("get", "/v1/events"),
                             ("get", "/metrics"), ("post", "/v1/detect")):
            r = getattr(c, method)(path)
            assert r.status_code == 401 and "API key" in r.json()["detail"], path
        assert c.get("/v1/stats", headers={"X-API-Key": "wrong-key!"}).status_code == 401
        assert c.get("/v1/stats", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert c.get("/v1/cameras?api_key=s3cret-key").status_code == 200
        assert c.get("/openapi.json").status_code == 401
        assert "/v1/detect" in c.get("/openapi.json", headers={"X-API-Key": "s3cret-key"}).json()["paths"]
        assert c.get("/").status_code == 200  # the dashboard's pages are code only: the key is asked for there
        r = c.post("/v1/detect", content=PHOTO.read_bytes(), headers={"X-API-Key": "s3cret-key"})
        assert r.status_code == 200


def test_cors_is_off_by_default(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(Settings(data_dir=tmp_path, workers=1, cors_origins=["https://ok.example"]))) as c:
        r = c.get("/v1/health", headers={"Origin": "https://ok.example"})
        assert r.headers["access-control-allow-origin"] == "https://ok.example"


@pytest.mark.parametrize(("url", "reason"), [
    ("file:///etc/passwd", "scheme 'file' not allowed"),
    ("/etc/passwd", r"scheme '\(none\)' not allowed"),
    ("../../secret.mp4", r"scheme '\(none\)' not allowed"),
    ("examples/clip.mp4", r"scheme '\(none\)' not allowed"),
    ("ftp://host/x", "scheme 'ftp' not allowed"),
    ("http://", "has no host"),
    ("http://host:99999/x", "out of range"),
    ("http://host/a b", "spaces"),
    ("99", "out of range"),
])
def test_camera_urls_are_checked(url: str, reason: str) -> None:
    with pytest.raises(CameraError, match=reason):
        check_source(url, allow_webcams=True)


def test_settings_refuse_bad_values(tmp_path: Path, monkeypatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("MASKWATCH_QUEUE_SIZE", "7")
    assert Settings(data_dir=tmp_path).queue_size == 7  # read from the environment
    for bad in ({"alert_webhooks": ["file:///tmp/x"]}, {"api_key": "short"}, {"workers": 0},
                {"max_pixels": 10}, {"unknown_option": 1}):
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, **bad)


def test_camera_url_accepted() -> None:
    assert check_source(" rtsp://user:pw@cam.local:554/live ", allow_webcams=True) == "rtsp://user:pw@cam.local:554/live"
    assert check_source("0", allow_webcams=True) == "0"
    with pytest.raises(CameraError, match="webcam"):
        check_source("0", allow_webcams=False)


def test_camera_requests_are_validated(client: TestClient) -> None:
    r = client.post("/v1/cameras", json={"name": "door", "url": "file:///etc/passwd"})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    r = client.post("/v1/cameras", json={"name": "door", "url": "http://127.0.0.1:9/x", "detect_every": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "detect_every"]
    r = client.post("/v1/cameras", json={"name": "door", "url": "http://127.0.0.1:9/x", "path": "/tmp"})
    assert r.status_code == 422  # unknown fields are refused, not ignored
    assert client.get("/v1/cameras/nope").status_code == 404
    assert client.delete("/v1/cameras/nope").status_code == 404
    assert client.get("/v1/cameras/nope/stream").status_code == 404


def test_a_camera_password_is_never_shown(client: TestClient) -> None:
    r = client.post("/v1/cameras", json={"name": "door", "url": "rtsp://admin:s3cret@127.0.0.1:9/live"})
    assert r.status_code == 201, r.text
    listed = client.get("/v1/cameras").text
    assert "s3cret" not in r.text + listed and "rtsp://admin:***@127.0.0.1:9/live" in listed
    assert client.delete(f"/v1/cameras/{r.json()['id']}").status_code in (200, 204)


# -- events --------------------------------------------------------------------


def test_events_paged_and_filtered(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=1)
    now = time.time()
    with Store(tmp_path / "events.sqlite") as store:
        for i in range(7):
            store.add(Alert(id=f"a{i}", source="cam1" if i % 2 else "cam2", track_id=i,
                            label="no_mask" if i < 5 else "incorrect", confidence=0.9, first_seen=now - 100 + i,
                            time=now - 100 + i * 10, box=(1, 2, 30, 40),
                            snapshot=b"\xff\xd8jpeg" if i == 3 else None), [])
    with TestClient(create_app(settings)) as c:
        page = c.get("/v1/events", params={"limit": 2}).json()
        assert page["total"] == 7 and [e["id"] for e in page["events"]] == ["a6", "a5"] and page["next_offset"] == 2
        last = c.get("/v1/events", params={"limit": 5, "offset": 5}).json()
        assert [e["id"] for e in last["events"]] == ["a1", "a0"] and last["next_offset"] is None
        cam1 = c.get("/v1/events", params={"camera": "cam1"}).json()
        assert [e["id"] for e in cam1["events"]] == ["a5", "a3", "a1"]
        assert [e["id"] for e in c.get("/v1/events?label=incorrect").json()["events"]] == ["a6", "a5"]
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 100 + 35))
        assert [e["id"] for e in c.get("/v1/events", params={"since": since}).json()["events"]] == ["a6", "a5", "a4"]
        snap = [e for e in cam1["events"] if e["id"] == "a3"][0]["snapshot_url"]
        assert snap == "/v1/events/a3/snapshot" and c.get(snap).content == b"\xff\xd8jpeg"
        assert c.get("/v1/events/a1/snapshot").status_code == 404
        assert c.get("/v1/events?label=maybe").status_code == 422
        assert c.get("/v1/events?since=yesterday").status_code == 422
        assert c.get("/v1/events?limit=0").status_code == 422
        state = c.app.state.maskwatch
        state.settings.snapshot_retention_hours = 0.001  # 3.6 s: every stored snapshot is older
        assert state.prune() == 1 and c.get(snap).status_code == 404


# -- malformed input: never a 500 ------------------------------------------------

MALFORMED = [
    ("post", "/v1/detect", {"Content-Type": "multipart/form-data"}, b"--x\r\nnonsense"),
    ("post", "/v1/detect", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x\r\nContent-Disposition: form"),
    ("post", "/v1/detect", {"Content-Type": "multipart/form-data; boundary=x"},
     b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\nplain text field\r\n--x--\r\n'),
    ("post", "/v1/detect", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--\r\n"),
    ("post", "/v1/detect", {"Content-Type": "application/json"}, b'{"image": "/etc/passwd"}'),
    ("post", "/v1/detect", {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + b"\0" * 64),
    ("post", "/v1/detect", {"Content-Type": "image/jpeg"}, b"\xff\xd8\xff\xe0" + b"\xff" * 300),
    ("post", "/v1/detect?annotated=maybe", {}, b"x"),
    ("post", "/v1/detect/batch", {"Content-Type": "multipart/form-data; boundary=y"}, b"\0\1\2garbage"),
    ("post", "/v1/detect/batch", {"Content-Type": "multipart/form-data; boundary=y"},
     b'--y\r\nContent-Disposition: form-data; name="other"\r\n\r\ntext\r\n--y--\r\n'),
    ("post", "/v1/cameras", {"Content-Type": "application/json"}, b"{not json"),
    ("post", "/v1/cameras", {"Content-Type": "application/json"}, b"\xff\xfe\xfa"),
    ("post", "/v1/cameras", {"Content-Type": "application/json"}, b"[" * 5000 + b"]" * 5000),
    ("post", "/v1/cameras", {"Content-Type": "application/json"}, b'{"name": "x", "url": 12}'),
    ("post", "/v1/cameras", {"Content-Type": "application/json"}, b'{"name": "x", "url": "http://[::1"}'),
    ("post", "/v1/cameras", {"Content-Type": "application/json"}, b'{"name": "x", "url": "rtsp://h\\u0000/"}'),
    ("post", "/v1/cameras", {"Content-Type": "text/plain"}, b"name=x"),
    ("get", "/v1/events?since=9999999999999999999", {}, b""),
    ("get", "/v1/events?since=-99999-01-01", {}, b""),
    ("get", "/v1/events?until=1e308", {}, b""),
    ("get", "/v1/events?offset=-1", {}, b""),
    ("get", "/v1/events/%00%ff/snapshot", {}, b""),
    ("delete", "/v1/cameras/..%2F..%2Fetc", {}, b""),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_requests_get_a_4xx(client: TestClient, method: str, path: str, headers: dict,
                                      body: bytes) -> None:
    r = client.request(method.upper(), path, headers=headers, content=body or None)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "detail" in r.json()


def test_broken_http_does_not_kill_the_server(tmp_path: Path) -> None:
    """Protocol-level garbage on a real socket: a lying Content-Length, a cut-off body, bytes that are not HTTP."""
    import socket

    with LiveServer(Settings(data_dir=tmp_path, workers=1)) as live:
        raw = [b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nshort",
               b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
               b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
               b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello on a plain port",
               b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"]
        for data in raw:
            with socket.create_connection(("127.0.0.1", live.port), timeout=5) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                try:
                    reply = s.recv(200)
                except (TimeoutError, ConnectionResetError):
                    reply = b""
                assert not reply.startswith(b"HTTP/1.1 5"), (data[:40], reply)
        r = httpx.post(live.url + "/v1/detect", content=PHOTO.read_bytes(), timeout=60)
        assert r.status_code == 200 and r.json()["faces"]


# -- live camera on a real server --------------------------------------------------


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def first_mjpeg_frame(url: str) -> np.ndarray:
    """Read the stream until one whole JPEG part has arrived and decode it."""
    with httpx.stream("GET", url, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/x-mixed-replace")
        buf = b""
        for chunk in r.iter_bytes():
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                continue
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
            if len(rest) >= length:
                return cv2.imdecode(np.frombuffer(rest[:length], np.uint8), cv2.IMREAD_COLOR)
    raise AssertionError("stream ended before a frame")


def test_live_camera_stream_alert_and_restart(tmp_path: Path) -> None:
    clip = pan("maksssksksss787.png", n=20)  # 6 masked people, 2 unmasked, moving slowly
    camera_feed = MjpegServer([jpeg(f) for f in clip.frames], fps=8).start()
    hook = Receiver().start()
    settings = Settings(data_dir=tmp_path, workers=1, snapshots=True, bucket_seconds=5, alert_webhooks=[hook.url])
    try:
        with LiveServer(settings) as live:
            body = {"name": "door", "url": camera_feed.url, "detect_every": 1, "alert_after": 0.5,
                    "alert_confidence": 0.6}
            r = httpx.post(live.url + "/v1/cameras", json=body)
            assert r.status_code == 201, r.text
            cam = r.json()
            assert cam["name"] == "door" and cam["url"] == camera_feed.url
            assert httpx.post(live.url + "/v1/cameras", json=body).status_code == 409  # same source twice

            view = wait_for(lambda: (v := httpx.get(f"{live.url}/v1/cameras/{cam['id']}").json())["frames"] >= 3
                            and v, 60, "the camera's first frames")
            assert view["status"] == "live" and view["history"]
            frame = first_mjpeg_frame(f"{live.url}/v1/cameras/{cam['id']}/stream")
            assert frame is not None and frame.shape == (480, 640, 3)
            # Viewers cost no thread: 12 open streams, and the API still answers at once.
            streams = [httpx.stream("GET", f"{live.url}/v1/cameras/{cam['id']}/stream", timeout=30) for _ in range(12)]
            opened = [s.__enter__() for s in streams]
            try:
                assert all(r.status_code == 200 for r in opened)
                t0 = time.monotonic()
                assert httpx.get(f"{live.url}/v1/stats", timeout=5).status_code == 200
                assert time.monotonic() - t0 < 2
            finally:
                for s in streams:
                    s.__exit__(None, None, None)

            page = wait_for(lambda: (p := httpx.get(f"{live.url}/v1/events", params={"camera": cam["id"]}).json())
                            ["total"] and p, 60, "an alert")
            event = page["events"][0]
            assert event["camera"] == cam["id"] and event["label"] in ("no_mask", "incorrect")
            snap = httpx.get(live.url + event["snapshot_url"])
            assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
            wait_for(lambda: event["id"] in hook.keys, 30, "the alert at the webhook")  # pushed, keyed by its id
            pushed = [a for a in hook.accepted if a["id"] == event["id"]][0]
            assert pushed["source"] == cam["id"] and pushed["label"] == event["label"]
            view = httpx.get(f"{live.url}/v1/cameras/{cam['id']}").json()
            assert view["compliance"] is not None and 0 < view["compliance"] < 1  # masked and unmasked seen
            assert sum(view["in_view"].values()) >= 6
            metrics = httpx.get(live.url + "/metrics").text
            assert f'maskwatch_camera_up{{camera="{cam["id"]}"}} 1.0' in metrics

        assert (tmp_path / "cameras.json").stat().st_mode & 0o777 == 0o600  # URLs may carry passwords
        saved = json.loads((tmp_path / "cameras.json").read_text())
        assert [c["id"] for c in saved] == [cam["id"]]
        with LiveServer(settings) as again:  # the camera comes back after a restart, and runs
            wait_for(lambda: httpx.get(f"{again.url}/v1/cameras/{cam['id']}").json()["frames"] >= 1, 60,
                     "the restored camera's frames")
            assert httpx.get(f"{again.url}/v1/events").json()["total"] >= 1  # events survive too
            restored = httpx.get(f"{again.url}/v1/cameras/{cam['id']}").json()
            assert (restored["name"], restored["detect_every"], restored["alert_after"]) == ("door", 1, 0.5)
            running = again.state.cameras.get(cam["id"])
            assert httpx.delete(f"{again.url}/v1/cameras/{cam['id']}").status_code == 204
            wait_for(lambda: not running.running, 30, "the deleted camera's thread to end")
            assert httpx.get(f"{again.url}/v1/cameras").json() == {"cameras": []}
        assert json.loads((tmp_path / "cameras.json").read_text()) == []
    finally:
        camera_feed.kill()
        hook.stop()


def test_maskwatch_serve_command(tmp_path: Path) -> None:
    """`maskwatch serve` as a user starts it: settings from the environment, SIGTERM stops it cleanly."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASKWATCH_API_KEY": "from-the-env", "MASKWATCH_WORKERS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "serve", "--port", str(port), "--data-dir",
                             str(tmp_path / "data")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            try:
                return httpx.get(url + "/v1/health", timeout=1).json()["workers"] == 1
            except httpx.HTTPError:
                assert proc.poll() is None, proc.communicate()
                return False

        wait_for(healthy, 60, "maskwatch serve to answer")
        assert httpx.get(url + "/v1/stats").status_code == 401
        assert httpx.get(url + "/v1/stats", headers={"X-API-Key": "from-the-env"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        # uvicorn shuts down gracefully (lifespan: cameras and workers stopped), then re-raises the signal.
        assert proc.returncode in (0, -signal.SIGTERM) and b"Application shutdown complete" in err, err[-2000:]
        assert (tmp_path / "data" / "events.sqlite").is_file()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
