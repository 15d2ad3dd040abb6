"""The shield as a shop owner runs it: `shieldwall serve` with the guard and
the detector wired in, driven by the operator's CLI commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tiny_shop import Shop, running_shop

BANNER = re.compile(r"listening on http://127\.0\.0\.1:(\d+) admin http://127\.0\.0\.1:(\d+)")
TOKEN = "e2e-admin-token"


@pytest.fixture
def shop() -> Iterator[str]:
    with running_shop() as url:
        yield url


def serve(procs: object, *args: str) -> tuple[str, str]:
    env = {**os.environ, "SHIELDWALL_ADMIN_TOKEN": TOKEN}
    proc = procs.python("-m", "shieldwall.cli", "serve", "--listen", "127.0.0.1:0",  # type: ignore[attr-defined]
                        "--admin", "127.0.0.1:0", *args,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    line = proc.stdout.readline().decode()
    m = BANNER.search(line)
    assert m, line
    return f"http://127.0.0.1:{m.group(1)}", f"http://127.0.0.1:{m.group(2)}"


def cli(admin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIELDWALL_ADMIN_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "shieldwall.cli", *args, "--admin", admin],
                          capture_output=True, text=True, env=env, timeout=30)


def test_pinned_under_attack_challenges_unknown_clients_until_the_operator_hands_back(
        procs: object, shop: str) -> None:
    url, admin = serve(procs, "--backend", shop, "--mode", "under-attack")
    first = httpx.get(url + "/product/1")
    assert first.status_code == 403
    assert 'name="shieldwall-challenge"' in first.text
    assert Shop.hits == [], "a challenged request must not reach the shop"

    assert cli(admin, "mode", "normal").returncode == 0
    status = json.loads(cli(admin, "status", "--json").stdout)
    assert status["mode"] == "normal" and status["pinned"] is True
    ok = httpx.get(url + "/product/1")
    assert ok.status_code == 200 and ok.text == "<html>the shop</html>"
    assert Shop.hits == ["/product/1"]

    assert cli(admin, "mode", "auto").returncode == 0
    status = json.loads(cli(admin, "status", "--json").stdout)
    assert status["pinned"] is False


def test_the_detector_sees_the_traffic_the_proxy_serves(procs: object, shop: str) -> None:
    url, admin = serve(procs, "--backend", shop)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    window: dict[str, object] = {}
    deadline = time.monotonic() + 20
    with httpx.Client() as client:
        while time.monotonic() < deadline and not window.get("rps"):
            for _ in range(5):
                assert client.get(url + "/").status_code == 200
            time.sleep(0.5)
            verdict = client.get(admin + "/api/verdict", headers=headers).json()
            window = verdict["window"]
    assert window.get("rps"), f"the detector never saw a window with requests: {verdict}"
    assert verdict["verdict"] == "normal"


def refused(url: str) -> bool:
    """A banned address is answered 403, or (a new connection) closed at accept."""
    try:
        return httpx.get(url).status_code == 403
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError):
        return True


def test_a_ban_from_the_cli_blocks_the_address_at_the_shield(procs: object, shop: str) -> None:
    url, admin = serve(procs, "--backend", shop)
    assert httpx.get(url + "/").status_code == 200
    done = cli(admin, "ban", "127.0.0.1", "--ttl", "1h", "--reason", "e2e")
    assert done.returncode == 0, done.stderr
    assert refused(url + "/")
    assert cli(admin, "unban", "127.0.0.1").returncode == 0
    assert httpx.get(url + "/").status_code == 200
    assert Shop.hits == ["/", "/"]
