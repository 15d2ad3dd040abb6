"""A real HAProxy in TCP mode in front of `shieldwall serve`, relaying with
``send-proxy-v2`` and ``send-proxy`` (v1), over IPv4 and IPv6: the shop's
X-Forwarded-For and the access log carry the shopper's own address, not the
balancer's, and HAProxy's health checks are not errors."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from proxy_backends import Backend, Reply, free_port
from test_proxy_serve import start_serve

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
                                reason="needs Debian's haproxy (make test installs it)")

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend(lambda s: Reply(body=b"shop")).start()
    yield b
    await b.stop()


def free_port6() -> int:
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


async def wait_listening(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def get_via(host: str, port: int, source: str | None = None) -> bytes:
    """One request through the balancer, from ``source`` (a loopback address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if source is not None:
        sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /via HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_haproxy_v2_and_v1_relay_the_real_client_over_ipv4_and_ipv6(
        procs: object, backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    cfg = tmp_path / "shield.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\naccess_log = "{log}"\nproxy_protocol_from = ["127.0.0.1/32"]\n'
                   f'[admin]\nlisten = "127.0.0.1:0"\n[[backends]]\nurl = "{backend.url}"\n'
                   '[upstream.health]\nenabled = false\n[guard]\nenabled = false\n[detect]\nenabled = false\n')
    shield, port, _ = await start_serve(procs, "--config", str(cfg))
    v2, v1, v2_6, v1_6 = free_port(), free_port(), free_port6(), free_port6()
    ha_cfg = tmp_path / "haproxy.cfg"
    ha_cfg.write_text(f"""
global
    maxconn 200
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fv2
    bind 127.0.0.1:{v2}
    bind [::1]:{v2_6}
    default_backend bv2
frontend fv1
    bind 127.0.0.1:{v1}
    bind [::1]:{v1_6}
    default_backend bv1
backend bv2
    server s 127.0.0.1:{port} send-proxy-v2 check inter 200ms
backend bv1
    server s 127.0.0.1:{port} send-proxy check inter 200ms check-send-proxy
""")
    ha = procs.start([HAPROXY, "-db", "-f", str(ha_cfg)],  # type: ignore[attr-defined]
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for host, p in (("127.0.0.1", v2), ("127.0.0.1", v1), ("::1", v2_6), ("::1", v1_6)):
        await wait_listening(host, p)
    await asyncio.sleep(0.6)  # a few health checks of each kind reach the shield
    got = [
        await get_via("127.0.0.1", v2, source="127.0.0.23"),
        await get_via("::1", v2_6),
        await get_via("127.0.0.1", v1, source="127.0.0.24"),
        await get_via("::1", v1_6),
    ]
    assert all(g.startswith(b"HTTP/1.1 200") and g.endswith(b"shop") for g in got), got
    assert [s.header("x-forwarded-for") for s in backend.seen] == ["127.0.0.23", "::1", "127.0.0.24", "::1"]
    await asyncio.sleep(0.8)  # the sweeper flushes the access log
    clients = [line.split(" ", 1)[0] for line in log.read_text().splitlines()]
    assert clients == ["127.0.0.23", "::1", "127.0.0.24", "::1"]
    assert ha.poll() is None and shield.poll() is None  # type: ignore[attr-defined]
    shield.terminate()  # type: ignore[attr-defined]
    err = (await asyncio.wait_for(asyncio.to_thread(shield.communicate), 10))[1].decode()  # type: ignore[attr-defined]
    assert "proxy_protocol" not in err, err
