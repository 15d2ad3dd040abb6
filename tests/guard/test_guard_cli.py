"""The ban/unban/status/mode commands: HTTP clients of a running shield's
admin API (here the guard harness's admin listener on loopback)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from guard_harness import ProxyHarness
from guard_helpers import facts, runtime
from typer.testing import CliRunner

from shieldwall.cli import app
from shieldwall.guard._cli import admin_url, parse_duration
from shieldwall.guard.decision import Action, Mode

TOKEN = "s3cret-admin-token"


@pytest.fixture
def shield() -> Iterator[ProxyHarness]:
    h = ProxyHarness(runtime(time.time), admin_token=TOKEN).start()
    try:
        yield h
    finally:
        h.stop()


def _cli(h: ProxyHarness, *args: str, token: str = TOKEN) -> tuple[int, str]:
    r = CliRunner().invoke(app, [*args, "--admin", f"http://127.0.0.1:{h.admin_port}",
                                 "--token", token])
    return r.exit_code, r.output


def test_ban_and_unban_change_the_running_shield(shield: ProxyHarness) -> None:
    code, out = _cli(shield, "ban", "203.0.113.0/24", "--ttl", "15m", "--reason", "flood")
    assert code == 0 and "banned 203.0.113.0/24 for 900s" in out
    assert shield.rt.gate.decide(facts(client="203.0.113.4")).action is Action.BLOCK
    code, out = _cli(shield, "bans")
    assert code == 0 and "203.0.113.0/24" in out and "flood" in out
    code, out = _cli(shield, "unban", "203.0.113.0/24")
    assert code == 0
    assert shield.rt.gate.decide(facts(client="203.0.113.4")).action is Action.ALLOW
    code, out = _cli(shield, "unban", "203.0.113.0/24")
    assert code == 1 and "was not banned" in out


def test_mode_pins_and_auto_unpins(shield: ProxyHarness) -> None:
    code, out = _cli(shield, "mode", "under-attack")
    assert code == 0 and "under_attack (pinned)" in out
    assert shield.rt.state.mode is Mode.UNDER_ATTACK
    shield.rt.set_mode(Mode.NORMAL, "detector")  # ignored: pinned
    code, out = _cli(shield, "status")
    assert code == 0 and "under_attack (pinned by operator)" in out and "memory healthy" in out
    code, out = _cli(shield, "mode", "auto")
    assert code == 0 and shield.rt.state.mode is Mode.NORMAL
    code, out = _cli(shield, "mode", "panic")
    assert code != 0 and "expected one of normal, elevated, under-attack, auto" in out


def test_allow_list_through_the_cli(shield: ProxyHarness) -> None:
    shield.rt.set_mode(Mode.UNDER_ATTACK, "operator")
    assert shield.rt.gate.decide(facts(client="198.51.100.5")).action is Action.CHALLENGE
    code, _ = _cli(shield, "allow", "198.51.100.5", "--reason", "uptime probe")
    assert code == 0
    assert shield.rt.gate.decide(facts(client="198.51.100.5")).action is Action.ALLOW
    code, _ = _cli(shield, "unallow", "198.51.100.5")
    assert code == 0
    assert shield.rt.gate.decide(facts(client="198.51.100.5")).action is Action.CHALLENGE


def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(shield: ProxyHarness) -> None:
    code, out = _cli(shield, "ban", "300.1.2.3")
    assert code == 1 and "'300.1.2.3' is not an IP address or CIDR" in out
    code, out = _cli(shield, "ban", "192.0.2.1", "--ttl", "soon")
    assert code != 0 and "is not a duration" in out
    assert shield.rt.bans() == []
    base = f"http://127.0.0.1:{shield.admin_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(base + "/api/ban", content=b"{not json", headers=auth)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = httpx.post(base + "/api/ban", json={"value": "192.0.2.1", "ttl": -5}, headers=auth)
    assert r.status_code == 400 and '"ttl" must be a positive number' in r.json()["error"]
    r = httpx.post(base + "/api/mode", json={"mode": "panic"}, headers=auth)
    assert r.status_code == 400 and "under_attack" in r.json()["error"]
    assert shield.rt.bans() == []


def test_wrong_token_and_unreachable_shield_are_clear_errors(shield: ProxyHarness) -> None:
    code, out = _cli(shield, "status", token="wrong")
    assert code == 1 and "refused the admin token (HTTP 401)" in out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    r = CliRunner().invoke(app, ["status", "--admin", f"http://127.0.0.1:{free}",
                                 "--token", TOKEN])
    assert r.exit_code == 1 and f"not reachable at http://127.0.0.1:{free}" in r.output


def test_the_installed_command_bans_through_the_token_from_the_environment(
        shield: ProxyHarness) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shieldwall.cli", "ban", "192.0.2.99", "--ttl", "1h",
         "--admin", f"http://127.0.0.1:{shield.admin_port}"],
        capture_output=True, text=True, timeout=60,
        env={"SHIELDWALL_ADMIN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert shield.rt.gate.decide(facts(client="192.0.2.99")).action is Action.BLOCK


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "1h", "2d", "1w")] == \
        [90, 90, 900, 3600, 172800, 604800]


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "http://127.0.0.1:{port}",
                                  "http://127.0.0.1:{port}/", "localhost:{port}"])
def test_the_admin_address_is_taken_as_serve_takes_it_or_as_a_url(
        shield: ProxyHarness, form: str) -> None:
    admin = form.format(port=shield.admin_port)
    for args in (["mode", "elevated"], ["ban", "192.0.2.7"], ["unban", "192.0.2.7"], ["bans"],
                 ["allow", "192.0.2.8"], ["unallow", "192.0.2.8"], ["status"]):
        r = CliRunner().invoke(app, [*args, "--admin", admin, "--token", TOKEN])
        assert r.exit_code == 0, (args, r.output)
    assert shield.rt.state.mode is Mode.ELEVATED


def test_admin_addresses_parse_like_serve_and_bad_ones_name_the_fix() -> None:
    assert admin_url("127.0.0.1:9180") == "http://127.0.0.1:9180"
    assert admin_url("[::1]:9180") == "http://[::1]:9180"
    assert admin_url("https://shield.example:8443/") == "https://shield.example:8443"
    for bad in ("9180", "127.0.0.1", "ftp://x:1", "[::1]", "a:b"):
        r = CliRunner().invoke(app, ["status", "--admin", bad, "--token", TOKEN])
        assert r.exit_code == 2 and "expected host:port like 127.0.0.1:9180" in r.output, bad
