"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright), as a new
user would use it: upload a photo on the upload page, add a camera (a loopback MJPEG stream),
watch its live view and compliance, and see an alert with the face snapshot appear."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install '.[server]'")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install '.[dev]'")

from maskwatch.server.settings import Settings  # noqa: E402
from server_helpers import LiveServer  # noqa: E402
from video_helpers import EXAMPLES, MjpegServer, jpeg, pan  # noqa: E402

KEY = "dashboard-test-key"


def test_dashboard_end_to_end(browser, tmp_path: Path) -> None:
    clip = pan("maksssksksss787.png", n=20)
    feed = MjpegServer([jpeg(f) for f in clip.frames], fps=8).start()
    settings = Settings(data_dir=tmp_path, workers=1, snapshots=True, bucket_seconds=5, api_key=KEY)
    outside: list[str] = []
    try:
        with LiveServer(settings) as live:
            page = browser.new_page()
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((live.url, "blob:",
                                                                                          "data:")) else None)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Without the key the page says what is wrong.
            page.goto(live.url + "/")
            sync_api.expect(page.locator("#load-error")).to_contain_text("401")
            page.fill("#api-key", KEY)
            page.dispatch_event("#api-key", "change")  # stores the key and reloads
            page.wait_for_load_state()
            sync_api.expect(page.locator("#empty")).to_be_visible()

            # Upload page: one photo, its annotated copy and a row per face.
            page.goto(live.url + "/upload")
            page.set_input_files("#photo", str(EXAMPLES / "maksssksksss787.png"))
            page.click("button[type=submit]")
            sync_api.expect(page.get_by_test_id("summary")).to_contain_text("faces", timeout=60_000)
            assert page.locator("#faces tr").count() >= 6
            assert "no_mask" in page.locator("#faces").inner_text()
            page.wait_for_function("document.getElementById('annotated').naturalWidth > 0")
            assert page.evaluate("document.getElementById('annotated').naturalWidth") == 400

            # A bad camera URL is refused with the reason shown in the form.
            page.goto(live.url + "/")
            page.fill("input[name=name]", "Back door")
            page.fill("input[name=url]", "file:///etc/passwd")
            page.click("#add-camera button[type=submit]")
            sync_api.expect(page.locator("#add-error")).to_contain_text("not allowed")

            # Add the loopback camera and watch it.
            page.fill("input[name=name]", "Front door")
            page.fill("input[name=url]", feed.url)
            page.fill("input[name=alert_after]", "0.5")
            page.click("#add-camera button[type=submit]")
            tile = page.locator("section.tile")
            sync_api.expect(tile).to_have_count(1)
            sync_api.expect(tile.get_by_test_id("status")).to_contain_text("live", timeout=60_000)
            page.wait_for_function("document.querySelector('img.live').naturalWidth === 640", timeout=30_000)
            sync_api.expect(tile.get_by_test_id("compliance")).to_have_text(re.compile(r"^\d+%$"), timeout=30_000)
            sync_api.expect(tile.get_by_test_id("chart").locator("polyline")).to_have_count(1, timeout=30_000)
            alert = tile.get_by_test_id("alert").first
            sync_api.expect(alert).to_contain_text("no mask", timeout=60_000)
            alert.locator("img").wait_for()
            page.wait_for_function("document.querySelector('[data-testid=alert] img').naturalWidth > 10")
            page.screenshot(path=str(tmp_path / "dashboard.png"))
            assert not errors, errors
            page.close()
    finally:
        feed.kill()
    assert outside == []  # nothing fetched from anywhere but the server
