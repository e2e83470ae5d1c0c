"""The review screen in headless Chromium with real key presses, across a killed and restarted server.

Needs Debian's chromium + chromium-driver and Selenium: tests/browser_setup.py installs them when absent
(as root). Run: .venv/bin/pytest -m browser tests/test_review_browser.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from browser_setup import BrowserSetupError, ensure_browser, make_driver
from test_review_decisions import PHOTO_H, PHOTO_W, write_review_manifest

from refine_iqa.review import load_decisions

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser_paths():
    try:
        return ensure_browser()
    except BrowserSetupError as e:
        pytest.fail(f"the browser test cannot run: {e}")


class Server:
    """`python -m refine_iqa.review` in a subprocess on a free loopback port (read back from its first line)."""

    def __init__(self, manifest: Path, decisions: Path, image_root: Path):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "refine_iqa.review", str(manifest), "--decisions", str(decisions),
             "--reviewer", "alice", "--batch", "b1", "--port", "0", "--image-root", str(image_root)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        line = self._first_line(timeout=60)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"unexpected first line {line!r}; stderr: {''.join(self.stderr)}"
        self.url = m.group(0)

    def _first_line(self, timeout: float) -> str:
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            self.kill()
            pytest.fail(f"review server did not start in {timeout}s; stderr: {''.join(self.stderr)}")
        return box[0]

    def kill(self) -> None:
        """SIGKILL, as a crash would: no chance to flush or clean up."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _body(driver):
    return driver.find_element("tag name", "body")


def _text(driver, element_id):
    return driver.find_element("id", element_id).text


def wait_for(driver, predicate, what, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except Exception:  # element replaced mid-read: try again
            pass
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; item={_body(driver).get_attribute('data-item-id')!r} "
                f"message={_text(driver, 'message')!r}")


def wait_item(driver, item_id, mode="review"):
    def ready():
        b = _body(driver)
        return (b.get_attribute("data-item-id") == item_id and b.get_attribute("data-mode") == mode
                and b.get_attribute("data-busy") is None
                and driver.execute_script("const i = document.getElementById('image');"
                                          "return i.complete && i.naturalWidth > 0 && i.src.includes(arguments[0]);",
                                          f"/image/{item_id}/"))
    wait_for(driver, ready, f"item {item_id!r} in mode {mode!r}")


def press(driver, *keys):
    from selenium.webdriver.common.action_chains import ActionChains

    for k in keys:
        ActionChains(driver).send_keys(k).perform()


def counts(driver):
    return {k: int(_text(driver, f"count-{k}").split()[0]) for k in ("reviewed", "remaining", "deleted")}


def test_review_in_headless_chromium(tmp_path, browser_paths):
    from selenium.webdriver.common.keys import Keys

    # 5 photos to review (at most 1 deletion at 20%) and one 95%-box item removed before review
    manifest = write_review_manifest(tmp_path, 5, oversized=True, photos=True)
    decisions = tmp_path / "decisions" / "b1.jsonl"
    server = Server(manifest, decisions, tmp_path)
    driver = make_driver(browser_paths, tmp_path / "chrome-profile")
    try:
        driver.get(server.url)
        wait_item(driver, "img-1")
        assert _text(driver, "label-object") == "face"
        assert _text(driver, "label-distortion") == "pixelate \u00b7 noticeable (level 2)"
        assert counts(driver) == {"reviewed": 0, "remaining": 5, "deleted": 0}
        # The box overlay sits on the displayed image exactly where [110, 0, 210, 90] of 360x240 maps.
        img, box = driver.execute_script(
            "const r = e => { const b = document.getElementById(e).getBoundingClientRect();"
            " return [b.left, b.top, b.width, b.height]; }; return [r('image'), r('box')];")
        sx, sy = img[2] / PHOTO_W, img[3] / PHOTO_H
        assert sx > 1.5 and abs(sx - sy) < 0.01  # enlarged to fill the stage, aspect kept
        want = [img[0] + 110 * sx, img[1] + 0 * sy, 100 * sx, 90 * sy]
        assert all(abs(a - b) <= 1.5 for a, b in zip(box, want, strict=True)), (box, want)

        press(driver, "a")  # accept
        wait_item(driver, "img-2")
        assert counts(driver) == {"reviewed": 1, "remaining": 4, "deleted": 0}
        press(driver, "d")
        wait_for(driver, lambda: driver.find_element("id", "reason-panel").is_displayed(), "the reason panel")
        press(driver, "2")  # distortion not perceptible
        wait_item(driver, "img-3")
        assert counts(driver)["deleted"] == 1
        press(driver, "b")  # back
        wait_item(driver, "img-2")
        assert "deleted (distortion not perceptible) by alice" in _text(driver, "current-decision")
        press(driver, Keys.ARROW_LEFT)
        wait_item(driver, "img-1")
        press(driver, Keys.ENTER)  # accept again: on to the next item without a decision
        wait_item(driver, "img-3")

        press(driver, "d")  # 1 of 5 already deleted: the 20% limit refuses on screen
        wait_for(driver, lambda: "Deletion limit reached" in _text(driver, "message"), "the limit message")
        assert not driver.find_element("id", "reason-panel").is_displayed()
        assert "at most 1 may be" in _text(driver, "message")
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "review.png"))

        press(driver, "r")
        wait_for(driver, lambda: _text(driver, "label-view") == "REFERENCE (undistorted)", "the reference view")
        assert "/image/img-3/ref" in driver.find_element("id", "image").get_attribute("src")
        press(driver, "r", "z")
        wait_for(driver, lambda: driver.find_element("id", "zoom").is_displayed(), "the zoom view")
        cw, ch = driver.execute_script("const c = document.getElementById('zoom'); return [c.width, c.height];")
        # cat box [40, 10, 300, 230] plus 15% margins (39 and 33 px), clamped to the image -> crop [1, 0, 339, 240]
        assert cw > 338 and abs(cw / ch - 338 / 240) < 0.01
        assert not driver.find_element("id", "frame").is_displayed()
        driver.save_screenshot(str(ARTIFACTS / "review-zoom.png"))
        press(driver, "z", "s")  # skip img-3 for now
        wait_item(driver, "img-4")

        server.kill()  # crash; a key press now must not pretend to have worked
        press(driver, "a")
        wait_for(driver, lambda: "did not answer" in _text(driver, "message"), "the offline message")
        server = Server(manifest, decisions, tmp_path)
        driver.get(server.url)
        wait_item(driver, "img-4")  # resumes exactly where the reviewer stopped
        assert counts(driver) == {"reviewed": 2, "remaining": 3, "deleted": 1}

        press(driver, "a")
        wait_item(driver, "img-5")
        press(driver, "a")
        wait_item(driver, "img-3")  # the skipped item comes back
        press(driver, "a")
        wait_item(driver, "img-2", mode="verify")  # post-hoc verification of the deletion
        assert _text(driver, "label-position") == "deleted item 1 of 1"
        press(driver, "d")  # confirm
        wait_for(driver, lambda: _body(driver).get_attribute("data-mode") == "done", "the done screen")
        assert "All 5 items of batch b1" in _text(driver, "done")
        assert _text(driver, "message") == "img-2: deletion confirmed."
        driver.save_screenshot(str(ARTIFACTS / "review-done.png"))
    finally:
        driver.quit()
        server.kill()
        shutil.rmtree(tmp_path / "chrome-profile", ignore_errors=True)

    events = [json.loads(x) for x in decisions.read_text().splitlines()]
    assert {e["batch"] for e in events} == {"b1"}
    assert [(e["event"], e["item_id"], e.get("status"), e.get("reason"), e.get("phase")) for e in events] == [
        ("auto", "img-big", "rejected", "box covers 95.2% of the image (limit 90%)", None),
        ("decision", "img-1", "accepted", None, "review"),
        ("decision", "img-2", "rejected", "not_perceptible", "review"),
        ("back", "img-2", None, None, "review"),
        ("back", "img-1", None, None, "review"),
        ("decision", "img-1", "accepted", None, "review"),
        ("skip", "img-3", None, None, "review"),
        ("decision", "img-4", "accepted", None, "review"),
        ("decision", "img-5", "accepted", None, "review"),
        ("decision", "img-3", "accepted", None, "review"),
        ("decision", "img-2", "rejected", "not_perceptible", "verify"),
    ]
    got = load_decisions(decisions)
    assert {k: (v["status"], v["verified"]) for k, v in got.items()} == {
        "img-big": ("rejected", False), "img-1": ("accepted", False), "img-2": ("rejected", True),
        "img-3": ("accepted", False), "img-4": ("accepted", False), "img-5": ("accepted", False)}
    assert got["img-big"]["rule"] == "box_over_90pct" and got["img-2"]["by"] == "alice"
