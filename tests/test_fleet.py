"""`maskwatch fleet`: cameras as Ray actors on a real local Ray (2 CPUs),
reading loopback MJPEG streams, with the real models; one camera's process
dies and Ray restarts it; every alert lands in one SQLite store."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from maskwatch.fleet import Camera, parse_fleet, run_fleet
from maskwatch.store import Store
from video_helpers import MjpegServer, jpeg, pan

ROOT = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray", reason="maskwatch fleet needs Ray: pip install '.[ray]' (make test does)")


def test_fleet_file_is_checked_before_anything_starts(tmp_path: Path) -> None:
    fleet = parse_fleet({"store": str(tmp_path / "e.sqlite"), "options": "--alert-after 2",
                         "cameras": [{"name": "door", "source": "http://cam/1", "options": ["--detect-every", "3"]},
                                     {"source": "0"}]})
    assert [c.name for c in fleet.cameras] == ["door", "camera2"]
    argv = fleet.cameras[0].argv
    assert argv[:4] == ("watch", "http://cam/1", "--alert-after", "2") and "--detect-every" in argv
    assert argv[argv.index("--store") + 1] == str(tmp_path / "e.sqlite")
    bad = [({"cameras": []}, "non-empty list"),
           ({"cameras": [{"name": "a"}]}, "needs at least `source:`"),
           ({"camras": [{"source": "0"}]}, "unknown key"),
           ({"cameras": [{"source": "0", "fps": 5}]}, r"unknown key\(s\) \['fps'\]"),
           ({"cameras": [{"name": "a", "source": "0"}, {"name": "a", "source": "1"}]}, "used twice"),
           ({"cameras": [{"name": "hall", "source": "0", "options": "--detect-evry 3"}]},
            "camera 'hall': unrecognized arguments: --detect-evry 3")]
    for data, message in bad:
        with pytest.raises(ValueError, match=message):
            parse_fleet(data)


class DiesOnce(Camera):
    """The camera named `door` kills its own process after a few frames, once."""

    def on_frame(self, rgb, result) -> None:
        super().on_frame(rgb, result)
        marker = Path(self.alerting.store).parent / "door-died"
        if self.camera.name == "door" and self.frames == 5 and not marker.exists():
            marker.write_text(str(time.time()))
            os._exit(1)



@pytest.mark.slow
def test_fleet_restarts_a_dead_camera_and_stores_all_alerts_once(ray_local, tmp_path: Path) -> None:
    frames = [jpeg(f) for f in pan("maksssksksss787.png", n=12).frames]  # 2 unmasked people among 8
    servers = [MjpegServer(frames, fps=25).start() for _ in range(2)]
    store = tmp_path / "events.sqlite"
    fleet = parse_fleet({"store": str(store), "options": "--alert-after 0 --alert-confidence 0.3",
                         "cpus_per_camera": 0.5,  # 3 cameras on the 2 CPUs
                         "cameras": [{"name": "door", "source": servers[0].url},
                                     {"name": "hall", "source": servers[1].url},
                                     {"name": "ghost", "source": str(tmp_path / "gone.mp4")}]})
    stop, results = threading.Event(), {}
    lines: list[str] = []
    runner = threading.Thread(target=lambda: results.update(
        run_fleet(fleet, stop, camera_cls=DiesOnce, status_every=1, report=lines.append)))
    runner.start()
    marker = tmp_path / "door-died"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if marker.exists() and store.exists():
                died = float(marker.read_text())
                with Store(store) as db:
                    alerts = [e.alert for e in db.query()]
                after = {a.source for a in alerts if a.time > died}
                if {s.url for s in servers} <= after:
                    break
            time.sleep(0.5)
    finally:
        stop.set()
        runner.join(90)
        for s in servers:
            s.kill()
    assert marker.exists(), "the door camera never died: the test tested nothing"
    assert {s.url for s in servers} <= after, f"alerts after the restart only from {after}"
    assert set(results) == {"door", "hall", "ghost"}
    assert "gone.mp4: no such file" in results.pop("ghost")["error"]  # reported; the others went on
    assert lines and "door: " in lines[-1]
    for name, r in results.items():
        assert "error" not in r, r
        assert r["frames"] > 0 and r["alerts"] >= 1, (name, r)
    with Store(store) as db:
        events = db.query()
    assert len({e.alert.id for e in events}) == len(events)
    assert {e.alert.source for e in events} == {s.url for s in servers}
    assert all(e.alert.label in ("no_mask", "incorrect") for e in events)
