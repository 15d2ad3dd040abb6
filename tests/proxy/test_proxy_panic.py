"""A health check never closes the shop: under the panic threshold every
backend gets traffic (passive ejection still counts), the log and the metrics
say so, and a health path that answers 404 is warned about at start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from proxy_backends import Backend, Client, Reply, send_raw, shield_config, status_of

from shieldwall.config import build_config
from shieldwall.proxy.balancer import Balancer
from shieldwall.proxy.worker import run_shield


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def four(threshold: float = 0.5) -> Balancer:
    bal = Balancer(FakeClock(), unhealthy_threshold=1, panic_threshold=threshold)
    bal.set_backends([(k, "127.0.0.1", i, 1) for i, k in enumerate("abcd", 1)])
    bal.update_panic()
    return bal


def picked(bal: Balancer, n: int = 40) -> set[str]:
    out = set()
    for _ in range(n):
        b = bal.pick()
        if b is not None:
            out.add(b.key)
    return out


def test_half_passing_is_no_panic_and_the_failing_ones_get_nothing() -> None:
    bal = four()
    a, b, _, _ = bal.backends
    bal.probe_result(a, False)
    bal.probe_result(b, False)
    assert not bal.update_panic() and not bal.panic
    assert picked(bal) == {"c", "d"}


def test_under_the_threshold_every_backend_gets_traffic_until_the_checks_pass() -> None:
    bal = four()
    a, b, c, _ = bal.backends
    for x in (a, b, c):
        bal.probe_result(x, False)
    assert bal.update_panic() and bal.panic and bal.passing == 1
    assert picked(bal) == {"a", "b", "c", "d"}
    bal.probe_result(a, True)
    bal.probe_result(a, True)  # healthy_threshold 2: a passes again
    assert bal.update_panic() and not bal.panic
    assert picked(bal) == {"a", "d"}


def test_in_panic_a_backend_failing_real_requests_is_still_ejected() -> None:
    bal = four()
    a, b, c, d = bal.backends
    for x in (a, b, c, d):
        bal.probe_result(x, False)
    bal.update_panic()
    for _ in range(bal.max_fails):
        bal.failed(b)
    assert picked(bal) == {"a", "c", "d"}


def test_a_threshold_of_zero_never_panics() -> None:
    bal = four(threshold=0.0)
    for x in bal.backends:
        bal.probe_result(x, False)
    assert not bal.update_panic()
    assert bal.pick() is None


async def test_a_shop_whose_only_backend_fails_its_health_path_stays_open_and_says_so(
        capfd: pytest.CaptureFixture[str]) -> None:
    fixed = {"on": False}
    backend = await Backend(
        lambda s: Reply(status=200 if fixed["on"] or s.target != "/healthz" else 404)).start()
    config = build_config(shield_config(
        [backend.url],
        upstream={"health": {"enabled": True, "path": "/healthz", "interval": 0.05,
                             "timeout": 0.5, "healthy_threshold": 2, "unhealthy_threshold": 2}}))
    try:
        async with run_shield(config) as shield:
            state = shield.worker.balancer.backends[0]
            for _ in range(200):
                if not state.up_by_health:
                    break
                await asyncio.sleep(0.02)
            assert not state.up_by_health
            c = await Client.open(shield.port)
            for i in range(5):
                await c.send(b"GET /cart/%d HTTP/1.1\r\nHost: shop\r\n\r\n" % i)
                assert (await c.response())[0] == 200
            c.close()
            assert [s.target for s in backend.seen if s.target != "/healthz"] == [
                f"/cart/{i}" for i in range(5)]
            metrics = await send_raw(shield.admin_port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
            assert b"\nshieldwall_upstream_panic 1.0\n" in metrics
            health = await send_raw(shield.admin_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            assert status_of(health) == 200  # the shield still serves: a balancer keeps it
            assert b'"backends_up": 0' in health and b'"panic": true' in health
            err = capfd.readouterr().err
            assert (f"backend 127.0.0.1:{backend.port} answers 404 to the health check GET /healthz"
                    in err)
            assert "routing in panic: 0 of 1 backend(s) pass the health check" in err
            fixed["on"] = True  # the probes kept going: recovery is seen
            for _ in range(200):
                if state.up_by_health:
                    break
                await asyncio.sleep(0.02)
            assert state.up_by_health and not shield.worker.balancer.panic
            assert "panic over: 1 of 1 backend(s) pass the health check" in capfd.readouterr().err
            metrics = await send_raw(shield.admin_port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
            assert b"\nshieldwall_upstream_panic 0.0\n" in metrics
            health = await send_raw(shield.admin_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            assert b'"backends_up": 1' in health and b'"panic": false' in health
    finally:
        await backend.stop()


def test_check_config_warns_when_a_reachable_backend_answers_404_to_the_health_path(
        tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    backend = loop.run_until_complete(Backend(lambda s: Reply(status=404)).start())
    conf = tmp_path / "s.toml"
    conf.write_text(f'[[backends]]\nurl = "{backend.url}"\n[upstream.health]\npath = "/hc"\n')
    try:
        proc = subprocess.Popen([sys.executable, "-m", "shieldwall.cli", "check-config", str(conf)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The backend runs in this thread's loop: serve it while the child asks.
        while proc.poll() is None:
            loop.run_until_complete(asyncio.sleep(0.02))
        out, err = proc.communicate()
    finally:
        loop.run_until_complete(backend.stop())
        loop.close()
    assert proc.returncode == 0, err
    assert out.startswith("ok: ")
    assert err == (f"warning: backend 127.0.0.1:{backend.port} answers 404 to the health check "
                   "GET /hc: upstream.health.path is probably wrong (set it to a path the shop "
                   "serves, like /healthz); until it passes, the backend counts as down\n")
