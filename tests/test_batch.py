"""`maskwatch batch` on a real local Ray instance (2 CPUs) with the real models.

The Ray tests share one Ray instance per module; each checks that every image
ends up in the Parquet exactly once and equal to what `maskwatch detect`
writes for it, after a clean run, a re-run, a run interrupted with Ctrl-C,
and a run whose worker process dies.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from maskwatch.batch import (
    FACES_DIR,
    Analyzer,
    BatchConfig,
    Item,
    list_inputs,
    read_results,
    result_rows,
    rows_to_results,
    run_batch,
)
from maskwatch.cli import main
from maskwatch.types import Face, FrameResult

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

ray = pytest.importorskip("ray", reason="maskwatch batch needs Ray: pip install '.[ray]' (make test does)")


# --- pure parts: no Ray --------------------------------------------------------------------------------------------


def test_rows_flatten_and_restore_the_part1_schema() -> None:
    face = Face((1.0, 2.0, 11.0, 22.0), 0.9, tuple((float(i), float(i + 1)) for i in range(5))).with_class(
        {"mask": 0.1, "no_mask": 0.7, "incorrect": 0.2}, 0.7)
    results = [FrameResult("a.jpg", 40, 30, (face, face), extra={"orientation": 6}).to_dict(),
               FrameResult("empty.jpg", 40, 30).to_dict(),
               FrameResult.failed("bad.jpg", "not an image").to_dict()]
    rows = [r for d in results for r in result_rows(d, "/abs/" + d["image"], 123)]
    assert [r["image"] for r in rows] == ["a.jpg", "a.jpg", "empty.jpg", "bad.jpg"]
    assert [r["face"] for r in rows] == [0, 1, None, None]
    assert rows[3]["error"] == "not an image" and rows[3]["label"] is None
    assert rows[0]["landmarks"] == [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0]
    assert rows_to_results(rows) == {d["image"]: d for d in results}


def test_inputs_from_folders_globs_and_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.jpg"):
        (photos / name).write_bytes(b"x")
    (photos / "notes.txt").write_text("no image")
    monkeypatch.chdir(tmp_path)
    items, ignored = list_inputs(["photos"])
    assert [(i.image, i.rel) for i in items] == [("photos/a.png", "a.png"), ("photos/sub/b.jpg", "sub/b.jpg")]
    assert ignored == [Path("photos/notes.txt")]
    assert [i.rel for i in list_inputs(["photos/**/*.jpg"])[0]] == ["sub/b.jpg"]
    Path("list.txt").write_text("# photos to audit\nphotos/sub/b.jpg\n\nphotos/missing.jpg\nphotos/sub/b.jpg\n")
    items, _ = list_inputs(["list.txt", "photos/a.png"])
    assert [i.image for i in items] == ["photos/sub/b.jpg", "photos/missing.jpg", "photos/a.png"]  # once each
    assert items[0].path == str(tmp_path / "photos/sub/b.jpg")
    with pytest.raises(FileNotFoundError, match="nope: no such file"):
        list_inputs(["nope"])
    with pytest.raises(FileNotFoundError, match="no image file matches"):
        list_inputs(["photos/*.webp"])


def test_missing_input_and_other_settings_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["batch", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "nope: no such file, folder or pattern" in capsys.readouterr().err
    assert main(["batch", str(EXAMPLES), "--out", str(tmp_path / "out"), "--part-size", "0"]) == 2
    assert "--part-size must be >= 1, got 0" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "batch.json").write_text(json.dumps({"threshold": 0.5}))
    assert main(["batch", str(EXAMPLES), "--out", str(tmp_path / "out")]) == 2
    assert "results there were made with other settings" in capsys.readouterr().err


# --- on Ray --------------------------------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4 example photos, one of them again in a subfolder, and 3 files that are no image."""
    folder = tmp_path_factory.mktemp("batch") / "photos"
    (folder / "sub").mkdir(parents=True)
    for p in EXAMPLES.glob("*.png"):
        shutil.copy(p, folder / p.name)
    shutil.copy(EXAMPLES / "maksssksksss83.png", folder / "sub" / "again.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo")
    good = (EXAMPLES / "maksssksksss487.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    return folder


N_IMAGES, N_FAILED = 8, 3


@pytest.fixture(scope="module")
def detected(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], Path]:
    """What `maskwatch detect` writes for the photos: JSON by image, and its annotated folder."""
    out = tmp_path_factory.mktemp("detect")
    assert main(["detect", str(photos), "--json", str(out / "faces.jsonl"), "--out-dir", str(out / "img")]) == 1
    lines = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    return {d["image"]: d for d in lines}, out / "img"


def assert_same_as_detect(out: Path, expected: dict[str, dict]) -> None:
    """Every image once, with the same boxes (1e-3 px), labels and figures as `maskwatch detect`."""
    table = read_results(out)
    per_image = Counter(table.column("path").to_pylist())
    faces = dict(zip(table.column("path").to_pylist(), table.column("faces").to_pylist(), strict=True))
    assert all(n == max(1, faces[p]) for p, n in per_image.items()), "an image counted twice"
    got = rows_to_results(table.to_pylist())
    assert sorted(got) == sorted(expected), "an image lost or extra"
    for name, want in expected.items():
        have = got[name]
        assert (have["width"], have["height"], have.get("error")) == (want["width"], want["height"],
                                                                       want.get("error")), name
        assert len(have["faces"]) == len(want["faces"]), name
        for f, g in zip(have["faces"], want["faces"], strict=True):
            assert max(abs(a - b) for a, b in zip(f["box"], g["box"], strict=True)) <= 1e-3, name
            assert f["label"] == g["label"], name
            assert f["landmarks"] == g["landmarks"] and f["probs"] == g["probs"], name
            assert (f["score"], f["confidence"]) == (g["score"], g["confidence"]), name
    assert sum(1 for d in got.values() if "error" in d) == N_FAILED


@pytest.mark.slow
def test_batch_equals_detect_and_a_rerun_does_no_work(ray_local, photos: Path, detected, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    expected, detect_images = detected
    out = tmp_path / "results"
    argv = ["batch", str(photos), "--out", str(out), "--part-size", "2", "--annotated"]
    assert main(argv) == 1  # 3 images could not be read
    printed = capsys.readouterr()
    assert f"run: {N_IMAGES} images analysed ({N_FAILED} failed), 0 already done" in printed.out
    assert f"{photos / 'empty.jpg'}: skipped: empty file" in printed.err
    assert_same_as_detect(out, expected)
    annotated = sorted(p.relative_to(out / "annotated") for p in (out / "annotated").rglob("*.*"))
    assert annotated == sorted(p.relative_to(detect_images) for p in detect_images.rglob("*.*"))
    for rel in annotated:
        assert (out / "annotated" / rel).read_bytes() == (detect_images / rel).read_bytes(), rel

    parts = {p: p.stat().st_mtime_ns for p in (out / FACES_DIR).iterdir()}
    assert len(parts) == N_IMAGES // 2
    assert main(argv) == 0
    assert f"{N_IMAGES} images, {N_IMAGES} already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / FACES_DIR).iterdir()} == parts  # nothing rewritten


class DiesOnce(Analyzer):
    """An actor whose process dies (no exception, no cleanup) in the middle of
    its first part, once per output folder: Ray must restart it and retry."""

    def analyze(self, item: Item) -> list[dict]:
        marker = self.faces.parent / "died"
        self.seen = getattr(self, "seen", 0) + 1
        if self.seen == 2 and not marker.exists():
            marker.write_text(item.image)
            os._exit(1)
        return super().analyze(item)


@pytest.mark.slow
def test_worker_killed_mid_run_loses_and_doubles_nothing(ray_local, photos: Path, detected, tmp_path: Path) -> None:
    expected, _ = detected
    out = tmp_path / "results"
    items, _ = list_inputs([str(photos)])
    run = run_batch(items, BatchConfig(out=out, part_size=3), analyzer=DiesOnce)
    assert (out / "died").is_file(), "the worker did not die: the test tested nothing"
    assert (run.analysed, run.failed, run.skipped) == (N_IMAGES, N_FAILED, 0)
    assert_same_as_detect(out, expected)
    assert not list((out / FACES_DIR).glob(".*")), "a temp file left behind"


@pytest.mark.slow
def test_interrupted_run_resumes_without_loss_or_doubles(ray_local, photos: Path, detected, tmp_path: Path) -> None:
    """Ctrl-C a real `maskwatch batch --ray local` once its first part is written,
    leave a half-written temp part as a killed worker would, then run again."""
    expected, _ = detected
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "maskwatch.cli", "batch", str(photos), "--out", str(out), "--part-size", "1",
            "--ray", "local", "--num-cpus", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((out / FACES_DIR).glob("part-*.parquet")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no part written in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        printed = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    first = len(list((out / FACES_DIR).glob("part-*.parquet")))
    assert 0 < first < N_IMAGES, f"not interrupted mid-run ({first} parts): {printed[-2000:]}"
    assert proc.returncode == 130, printed[-2000:]
    assert "interrupted: finished parts are kept" in printed
    (out / FACES_DIR / ".part-0123456789abcdef0123.99999.tmp").write_bytes(b"PAR1 half a part")

    items, _ = list_inputs([str(photos)])
    run = run_batch(items, BatchConfig(out=out, part_size=1))
    assert run.skipped == first and run.analysed == N_IMAGES - first
    assert_same_as_detect(out, expected)
    assert not list((out / FACES_DIR).glob(".*"))
