"""`shieldwall serve` as a user runs it: the quick start, workers sharing the
port with a supervisor that restarts them, SIGTERM drain, SIGHUP reload,
TLS, and surviving running out of file descriptors."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from proxy_backends import Backend, Client, Reply, send_raw, shield_config, status_of

from shieldwall.config import build_config
from shieldwall.proxy.worker import run_shield

BANNER = re.compile(r"shieldwall listening on (https?)://127\.0\.0\.1:(\d+) admin http://127\.0\.0\.1:(\d+)")


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend(lambda s: Reply(body=b"from-a")).start()
    yield b
    await b.stop()


async def start_serve(procs: object, *args: str, **kw: object) -> tuple[subprocess.Popen[bytes], int, int]:
    proc = procs.python("-m", "shieldwall.cli", "serve", *args,  # type: ignore[attr-defined]
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)).decode()
    m = BANNER.search(line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return proc, int(m.group(2)), int(m.group(3))


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    code = await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
    return code


def get(port: int, path: str = "/") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n" % path.encode()


async def test_quick_start_needs_no_file_and_sigterm_stops_it(procs: object, backend: Backend) -> None:
    proc, port, admin = await start_serve(procs, "--listen", "127.0.0.1:0", "--backend", backend.url,
                                          "--admin", "127.0.0.1:0")
    out = await send_raw(port, get(port))
    assert status_of(out) == 200 and out.endswith(b"from-a")
    health = await send_raw(admin, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(health) == 200
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 15) == 0


async def test_bad_flags_exit_2_with_the_problem(procs: object) -> None:
    out = subprocess.run([sys.executable, "-m", "shieldwall.cli", "serve", "--listen", "nowhere",
                          "--backend", "http://127.0.0.1:9"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "listen: 'nowhere' is not accepted; expected host:port, like 127.0.0.1:8080" in out.stderr


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids += [int(k) for k in text]
    return kids


async def test_workers_share_the_port_and_a_dead_worker_is_replaced(
        procs: object, backend: Backend, tmp_path: Path) -> None:
    cfg = tmp_path / "shield.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\nworkers = 2\naccess_log = "off"\n'
                   f'[admin]\nlisten = "127.0.0.1:0"\n[[backends]]\nurl = "{backend.url}"\n'
                   '[upstream.health]\nenabled = false\n[guard]\nenabled = false\n[detect]\nenabled = false\n')
    proc, port, admin = await start_serve(procs, "--config", str(cfg))
    kids = _children(proc.pid)
    assert len(kids) == 2
    for _ in range(20):
        assert status_of(await send_raw(port, get(port))) == 200
    await asyncio.sleep(1.3)  # worker snapshots reach the admin's collector
    metrics = await send_raw(admin, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
    m = re.search(rb'shieldwall_requests_total\{decision="allow",outcome="ok",status="200"\} (\d+)', metrics)
    assert m and int(m.group(1)) == 20
    os.kill(kids[1], signal.SIGKILL)
    for _ in range(100):
        now = _children(proc.pid)
        if len(now) == 2 and kids[1] not in now:
            break
        await asyncio.sleep(0.1)
    assert len(_children(proc.pid)) == 2 and kids[1] not in _children(proc.pid)
    for _ in range(10):
        assert status_of(await send_raw(port, get(port))) == 200
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 20) == 0
    assert [k for k in workers if Path(f"/proc/{k}").exists()] == []


async def test_sigterm_drains_the_request_in_flight(procs: object, tmp_path: Path) -> None:
    slow = await Backend(lambda s: Reply(body=b"done", delay=1.0)).start()
    try:
        proc, port, _ = await start_serve(procs, "--listen", "127.0.0.1:0", "--backend", slow.url,
                                          "--admin", "127.0.0.1:0")
        pending = asyncio.ensure_future(send_raw(port, get(port, "/slow")))
        await asyncio.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        out = await pending
        assert status_of(out) == 200 and out.endswith(b"done")
        assert await wait_exit(proc, 15) == 0
    finally:
        await slow.stop()


async def test_sighup_reloads_backends_without_dropping_connections(
        procs: object, backend: Backend, tmp_path: Path) -> None:
    other = await Backend(lambda s: Reply(body=b"from-b")).start()
    cfg = tmp_path / "shield.toml"

    def write(url: str, extra: str = "") -> None:
        cfg.write_text(f'listen = "127.0.0.1:0"\naccess_log = "off"\n[admin]\nlisten = "127.0.0.1:0"\n'
                       f'[[backends]]\nurl = "{url}"\n[upstream.health]\nenabled = false\n'
                       f'[guard]\nenabled = false\n[detect]\nenabled = false\n{extra}')

    try:
        write(backend.url)
        proc, port, _ = await start_serve(procs, "--config", str(cfg))
        c = await Client.open(port)
        await c.send(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")
        assert (await c.response())[2] == b"from-a"
        write(other.url)
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        await c.send(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")  # same connection, still open
        assert (await c.response())[2] == b"from-b"
        write(other.url, "[limits]\nmax_headers = 0\n")  # invalid: refused, old config kept
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        await c.send(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")
        assert (await c.response())[2] == b"from-b"
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 15) == 0
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert "reload refused" in err
        assert "limits.max_headers: 0 is not accepted; expected a number >= 1" in err
    finally:
        await other.stop()


async def test_tls_with_a_self_signed_certificate(backend: Backend, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    config = build_config(shield_config([backend.url], tls={"cert": str(cert), "key": str(key)}))
    async with run_shield(config) as shield:
        assert shield.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        reader, writer = await asyncio.open_connection("127.0.0.1", shield.port, ssl=ctx)
        writer.write(b"GET /secure HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
        out = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert status_of(out) == 200
    assert backend.seen[0].header("x-forwarded-proto") == "https"


async def test_running_out_of_file_descriptors_does_not_take_it_down(
        procs: object, backend: Backend) -> None:
    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc, port, _ = await start_serve(procs, "--listen", "127.0.0.1:0", "--backend", backend.url,
                                      "--admin", "127.0.0.1:0", preexec_fn=low_fd_limit)
    opened = []
    for _ in range(120):
        try:
            opened.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError:
            break
    await asyncio.sleep(0.3)
    for _, w in opened:
        w.close()
    await asyncio.sleep(0.5)
    start = time.monotonic()
    while True:
        out = await send_raw(port, get(port))
        if status_of(out) == 200 or time.monotonic() - start > 5:
            break
        await asyncio.sleep(0.1)
    assert status_of(out) == 200
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 15) == 0


async def test_sighup_reaches_every_worker(procs: object, backend: Backend, tmp_path: Path) -> None:
    other = await Backend(lambda s: Reply(body=b"from-b")).start()
    cfg = tmp_path / "shield.toml"

    def write(url: str) -> None:
        cfg.write_text(f'listen = "127.0.0.1:0"\nworkers = 2\naccess_log = "off"\n'
                       f'[admin]\nlisten = "127.0.0.1:0"\n[[backends]]\nurl = "{url}"\n'
                       '[upstream.health]\nenabled = false\n[guard]\nenabled = false\n'
                       '[detect]\nenabled = false\n')

    try:
        write(backend.url)
        proc, port, _ = await start_serve(procs, "--config", str(cfg))
        write(other.url)
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        # many fresh connections: the kernel spreads them over both workers
        bodies = {(await send_raw(port, get(port)))[-6:] for _ in range(30)}
        assert bodies == {b"from-b"}
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 20) == 0
    finally:
        await other.stop()
