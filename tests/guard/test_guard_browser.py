"""A real browser (Debian's chromium, headless, driven by selenium through
Debian's chromedriver) goes from the challenge page to the shop page with no
click: through crypto.subtle, through the inline SHA-256 used where
crypto.subtle is missing, and without JavaScript through the delayed
meta-refresh."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guard_harness import ProxyHarness
from guard_helpers import runtime

import chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not chromium.available():
    pytest.skip(chromium.MISSING, allow_module_level=True)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    drv = chromium.driver(tmp_path / "profile")
    try:
        yield drv
    finally:
        chromium.quit_driver(drv)


def _wait_for_shop(drv: Any, t0: float, timeout: float = 30.0) -> float:
    while time.monotonic() - t0 < timeout:
        if drv.title == "Shop":
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"never reached the shop; at {drv.current_url}: {drv.page_source[:300]}")


@pytest.fixture
def shield() -> Iterator[ProxyHarness]:
    # the default difficulty: what a shopper's browser really has to do
    h = ProxyHarness(runtime(time.time, mode="under_attack", challenge={"nojs_delay": 2})).start()
    try:
        yield h
    finally:
        h.stop()


def test_browser_passes_the_challenge_without_a_click(browser: Any, shield: ProxyHarness) -> None:
    url = f"http://127.0.0.1:{shield.port}/shop?item=7"
    t0 = time.monotonic()
    browser.get(url)
    took = _wait_for_shop(browser, t0)
    assert browser.current_url == url
    assert "Welcome to the shop" in browser.page_source
    names = {c["name"] for c in browser.get_cookies()}
    assert "sw_p" in names
    counts = shield.rt.status()["counters"]
    assert counts["challenge"] >= 1 and counts["verify:ok:pow"] == 1
    print(f"browser solved {shield.rt.settings.challenge.difficulty} bits and reached the shop "
          f"in {took:.2f}s")
    # the pass holds: the next page needs no challenge
    browser.get(f"http://127.0.0.1:{shield.port}/other")
    assert browser.title == "Shop"
    assert shield.rt.status()["counters"]["verify:ok:pow"] == 1


def test_browser_without_crypto_subtle_uses_the_inline_sha256(browser: Any,
                                                              shield: ProxyHarness) -> None:
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
        "source": "Object.defineProperty(window.crypto, 'subtle', {value: undefined});"})
    t0 = time.monotonic()
    browser.get(f"http://127.0.0.1:{shield.port}/fallback")
    print(f"inline SHA-256: reached the shop in {_wait_for_shop(browser, t0):.2f}s")
    assert browser.execute_script("return typeof window.crypto.subtle") == "undefined"
    assert shield.rt.status()["counters"]["verify:ok:pow"] == 1


def test_browser_without_javascript_gets_in_after_the_delay(tmp_path: Path,
                                                           shield: ProxyHarness) -> None:
    drv = chromium.driver(tmp_path / "nojs", javascript=False)
    try:
        t0 = time.monotonic()
        drv.get(f"http://127.0.0.1:{shield.port}/slow-path")
        took = _wait_for_shop(drv, t0)
        assert took >= 1.0  # the meta-refresh waits for the server-side delay
        assert shield.rt.status()["counters"]["verify:ok:nojs"] == 1
    finally:
        chromium.quit_driver(drv)
        shutil.rmtree(tmp_path / "nojs", ignore_errors=True)
