"""Debian's chromium, headless, through Debian's chromedriver (selenium), for
the tests where a real browser must do the thing: the challenge page, the
console, the status page. One place for the flags and for stopping both
processes by their PIDs, also when the test fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MISSING = "chromium/chromedriver not installed (make test installs them)"


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def driver(profile: Path, *, javascript: bool = True, window: str = "") -> Any:
    """A headless chromium with its own profile directory, no network of its
    own (no QUIC, updates, sync), ``window`` like ``"1440,2200"``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"]
    if window:
        flags.append(f"--window-size={window}")
    for flag in flags:
        opts.add_argument(flag)
    if not javascript:
        opts.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    service = Service(executable_path=CHROMEDRIVER)
    try:
        return webdriver.Chrome(service=service, options=opts)
    except Exception:
        if service.process is not None:
            service.process.kill()
        raise


def quit_driver(drv: Any) -> None:
    """Quit the browser; kill chromedriver by its PID if quitting failed."""
    proc = drv.service.process
    try:
        drv.quit()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
