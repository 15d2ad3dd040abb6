"""One probe against real servers on loopback: every way a shop can look down."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from monitor_helpers import Shop, _Server

from shieldwall.monitor._checks import run_check
from shieldwall.monitor._config import CheckSettings


def check(url: str, **kw: Any) -> CheckSettings:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("interval", 5.0)
    return CheckSettings(name="shop", url=url, **kw)


async def test_a_healthy_shop_passes_with_status_latency_and_body() -> None:
    shop = Shop()
    try:
        r = await run_check(check(shop.url, body_contains="Add to cart", max_latency=1.0), "p1")
    finally:
        shop.close()
    assert r.ok and r.status == 200 and r.reason == ""
    assert r.latency is not None and 0 < r.latency < 1.0


async def test_an_error_status_fails_with_the_status_and_what_was_expected(shop: Shop) -> None:
    shop.mode = "error"
    r = await run_check(check(shop.url), "p1")
    assert not r.ok and r.status == 503 and r.reason == "status 503 (expected 200-399)"
    r = await run_check(check(shop.url, expect_status=[503]), "p1")
    assert r.ok


async def test_a_stopped_shop_fails_as_cannot_connect(shop: Shop) -> None:
    shop.down()
    r = await run_check(check(shop.url), "p1")
    assert not r.ok and r.reason.startswith("cannot connect")


async def test_a_hanging_shop_fails_at_the_timeout(shop: Shop) -> None:
    shop.mode = "hang"
    r = await run_check(check(shop.url, timeout=0.3), "p1")
    assert not r.ok and r.reason == "timeout after 0.3s"
    assert r.latency is not None and 0.25 < r.latency < 1.5


async def test_a_slow_shop_fails_the_latency_threshold(shop: Shop) -> None:
    shop.mode, shop.slow_for = "slow", 0.3
    r = await run_check(check(shop.url, max_latency=0.1), "p1")
    assert not r.ok and r.reason.startswith("slow: ") and r.reason.endswith("> 0.1s")


async def test_a_wrong_page_fails_the_body_keywords(shop: Shop) -> None:
    shop.mode = "wrong"
    r = await run_check(check(shop.url, body_contains="Add to cart"), "p1")
    assert not r.ok and r.reason == "body lacks 'Add to cart'"
    r = await run_check(check(shop.url, body_excludes="maintenance"), "p1")
    assert not r.ok and r.reason == "body contains 'maintenance'"
    shop.mode = "ok"
    assert (await run_check(check(shop.url, body_excludes="maintenance"), "p1")).ok


async def test_each_probe_speaks_from_its_own_loopback_address(shop: Shop) -> None:
    shop.fail_for = {"127.0.0.3"}
    good = await run_check(check(shop.url), "p2", source_address="127.0.0.2")
    bad = await run_check(check(shop.url), "p3", source_address="127.0.0.3")
    assert good.ok and not bad.ok
    assert shop.hits == {"127.0.0.2": 1, "127.0.0.3": 1}


# -- TLS certificate expiry -------------------------------------------------------


def make_cert(tmp: Path, days: int) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl binary is not installed")
    key, cert = tmp / f"key{days}.pem", tmp / f"cert{days}.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.fixture
def tls_shop(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    key, cert = make_cert(tmp_path, request.param)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = _Server(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/", cert
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("tls_shop", [5], indirect=True)
async def test_a_certificate_about_to_expire_fails_with_the_days_left(tls_shop: tuple[str, Path]) -> None:
    url, cert = tls_shop
    r = await run_check(check(url, ca_file=str(cert), tls_min_days=14), "p1")
    assert not r.ok and r.status == 200
    assert r.tls_days_left is not None and 4.9 < r.tls_days_left <= 5.0
    assert r.reason.startswith("TLS certificate expires in 5.0 days (< 14)")


@pytest.mark.parametrize("tls_shop", [400], indirect=True)
async def test_a_fresh_certificate_passes_and_reports_its_days(tls_shop: tuple[str, Path]) -> None:
    url, cert = tls_shop
    r = await run_check(check(url, ca_file=str(cert), tls_min_days=14), "p1")
    assert r.ok and r.tls_days_left is not None and 399 < r.tls_days_left <= 400


@pytest.mark.parametrize("tls_shop", [400], indirect=True)
async def test_an_untrusted_certificate_is_a_tls_error(tls_shop: tuple[str, Path]) -> None:
    url, _ = tls_shop
    r = await run_check(check(url), "p1")
    assert not r.ok and r.reason.startswith("TLS error") and "CERTIFICATE_VERIFY_FAILED" in r.reason
