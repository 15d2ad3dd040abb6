"""The console in a real browser (Debian's chromium, headless, through
chromedriver) during a drill on loopback: `shieldwall serve --workers 2` in
front of a tiny shop, shoppers browsing, then the drill's LOIC-style flood.

The operator logs in with the token, sees the flood's rate and the
detector's verdict change within seconds, bans the top offender with one
click (its requests are then refused), pins the mode (and `shieldwall
status` says so); a cross-site form post made from the same browser, with
the console's cookie in it, is refused. Screenshots of the calm and the
attack go to docs/ when SHIELDWALL_SCREENSHOTS=1 (else to the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_helpers import BANNER, quiet_config

import chromium
from lab_procs import Procs
from tiny_shop import running_shop

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

if not chromium.available():
    pytest.skip(chromium.MISSING, allow_module_level=True)

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"


TOKEN = "console-browser-token"
CALM_S = 22.0
"""Shoppers only: the detector learns its baseline (15 windows) first."""
VERDICT_WITHIN_S = 15.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    drv = chromium.driver(tmp_path / "profile", window="1440,2200")
    try:
        yield drv
    finally:
        chromium.quit_driver(drv)


class _Evil(BaseHTTPRequestHandler):
    """Another origin on the same host (so the same *site*: a SameSite=Strict
    cookie goes along) whose page posts a form to the admin API by itself.
    text/plain makes the body valid JSON: {"mode": "normal", "x": "="}."""

    target = ""

    def do_GET(self) -> None:
        page = (f'<html><body><form id="f" method="post" enctype="text/plain" '
                f'action="{self.target}/api/mode">'
                '<input type="hidden" name=\'{"mode": "normal", "x": "\' value=\'"}\'>'
                '</form><script>document.getElementById("f").submit()</script></body></html>')
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def _wait(what: str, fn: Callable[[], Any], timeout: float, every: float = 0.2,
          page: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:  # a re-rendered element: try again
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    seen = f"; at {page.current_url}: {page.page_source[:400]}" if page is not None else ""
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r}){seen}")


def _text(drv: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(drv.find_element(By.CSS_SELECTOR, css).text)


def _shot(drv: Any, tmp_path: Path, name: str) -> Path:
    out = DOCS if os.environ.get("SHIELDWALL_SCREENSHOTS") == "1" else tmp_path
    path = out / name
    drv.save_screenshot(str(path))
    return path


def _cli(admin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIELDWALL_ADMIN_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "shieldwall.cli", *args, "--admin", admin],
                          capture_output=True, text=True, env=env, timeout=30)


def test_the_operator_sees_the_flood_bans_its_top_offender_and_pins_the_mode(
        browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    drv = browser
    procs = Procs()
    evil = ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with running_shop() as shop:
            env = {**os.environ, "SHIELDWALL_ADMIN_TOKEN": TOKEN}
            shield = procs.python("-m", "shieldwall.cli", "serve", "--listen", "127.0.0.1:0",
                                  "--admin", "127.0.0.1:0", "--backend", shop, "--workers", "2",
                                "--config", str(quiet_config(tmp_path)),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            assert shield.stdout is not None
            m = BANNER.search(shield.stdout.readline().decode())
            assert m
            port, admin = int(m.group(1)), f"http://127.0.0.1:{m.group(2)}"
            drill = procs.python(str(HERE / "console_drill.py"), "--shield", f"127.0.0.1:{port}",
                                 "--calm", str(CALM_S), "--flood", "90",
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

            # -- log in with the token ------------------------------------------------
            drv.get(admin + "/console")
            assert "Admin token" in drv.page_source
            drv.find_element(By.ID, "token").send_keys(TOKEN)
            drv.find_element(By.ID, "operator").send_keys("ann")
            drv.find_element(By.ID, "login-button").click()
            _wait("the console after login", lambda: _text(drv, "#mode") == "NORMAL", 15,
                  page=drv)
            assert _text(drv, "#operator") == "ann"

            # -- calm: shoppers only --------------------------------------------------------
            _wait("both workers listed",
                  lambda: len(drv.find_elements(By.CSS_SELECTOR, "#workers tr[data-worker]")) == 2,
                  15)
            calm_rps = float(_wait("the shoppers' rate", lambda: float(_text(drv, "#rps-total")) > 0,
                                   20) and _text(drv, "#rps-total"))
            assert _text(drv, "#verdict") == "normal"
            time.sleep(max(0.0, CALM_S - 8))  # a few calm minutes' worth of chart
            _shot(drv, tmp_path, "console-calm.png")

            # -- the flood: rate and verdict within seconds ------------------------------------
            assert drill.stdout is not None
            line = drill.stdout.readline().decode()
            assert line.startswith("flood "), line
            flood_at = float(line.split()[1])
            _wait("the flood's rate on the page", lambda: float(_text(drv, "#rps-total")) > 60, 10,
                  page=drv)
            seen_rate = time.time() - flood_at
            _wait("the detector's verdict on the page",
                  lambda: _text(drv, "#verdict") == "ddos", VERDICT_WITHIN_S)
            seen_verdict = time.time() - flood_at
            assert _text(drv, "#verdict-kind") == "(flood)"
            assert drv.find_elements(By.CSS_SELECTOR, "#evidence li"), "the verdict shows its evidence"
            _wait("the detector's mode", lambda: _text(drv, "#mode") in ("ELEVATED", "UNDER ATTACK"), 10)

            # -- ban the top offender with one click -------------------------------------------
            def top_offender() -> str:
                row = drv.find_element(By.CSS_SELECTOR, "#top-address tr[data-value]")
                return str(row.get_attribute("data-value"))

            offender = _wait("a flood source on top",
                             lambda: top_offender().startswith("127.6") and top_offender(), 10)

            def click_ban() -> bool:
                button = drv.find_element(
                    By.CSS_SELECTOR, f'#top-address tr[data-value="{offender}"] button.ban')
                button.click()
                return True

            _wait("the ban button", click_ban, 5)
            _wait("the ban in the active bans",
                  lambda: drv.find_elements(By.CSS_SELECTOR,
                                            f'#bans tr[data-value="{offender}/32"]'), 5)
            origin = _text(drv, f'#bans tr[data-value="{offender}/32"] td:nth-child(2)')
            assert origin == "operator"
            t = httpx.HTTPTransport(local_address=offender)
            with httpx.Client(transport=t) as c:
                try:
                    refused = c.get(f"http://127.0.0.1:{port}/")
                except httpx.TransportError:
                    pass  # a new connection from a banned address is closed at accept
                else:
                    assert refused.status_code == 403
                    assert "shieldwall-challenge" not in refused.text, "blocked, not challenged"

            def refusals() -> float:
                return sum(float(_text(drv, f'#rps-outcomes span[data-outcome="{k}"] b'))
                           for k in ("blocked", "refused_at_connect"))

            _wait("the ban's refusals on the page", lambda: refusals() > 0, 10, page=drv)

            # -- pin the mode ------------------------------------------------------------------
            drv.find_element(By.CSS_SELECTOR, '#mode-switch button[data-mode="under_attack"]').click()
            _wait("the pinned mode", lambda: _text(drv, "#mode") == "UNDER ATTACK" and
                  "pinned by ann" in _text(drv, "#mode-reason"), 10)
            status = _cli(admin, "status")
            assert status.returncode == 0, status.stderr
            assert "mode:     under_attack (pinned by operator)" in status.stdout
            _wait("the audit trail", lambda: "mode set to under_attack" in _text(drv, "#timeline"), 5)
            time.sleep(3)
            _shot(drv, tmp_path, "console-attack.png")

            # -- a cross-site form post, with the console's cookie, is refused ---------------------
            _Evil.target = admin
            drv.get(f"http://127.0.0.1:{evil.server_address[1]}/")
            _wait("the refused post", lambda: "error" in drv.page_source, 10)
            assert "is not this admin listener" in drv.page_source or \
                "Sec-Fetch-Site" in drv.page_source, drv.page_source[:300]
            after = json.loads(_cli(admin, "status", "--json").stdout)
            assert after["mode"] == "under_attack" and after["pinned"] is True

            print(json.dumps({"calm_rps": calm_rps, "rate_seen_s": round(seen_rate, 1),
                              "verdict_seen_s": round(seen_verdict, 1), "banned": offender}))
    finally:
        evil.shutdown()
        evil.server_close()
        procs.stop_all()
