"""An access log on stdout that nobody reads must not stop the proxy: the
lines wait in a bounded backlog, then are dropped and counted, and the shop
keeps being served."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess

from proxy_backends import Backend, Reply

from shieldwall.proxy.accesslog import AccessLog

BANNER = re.compile(rb"listening on http://127\.0\.0\.1:(\d+) admin http://127\.0\.0\.1:(\d+)")


def _line(log: AccessLog, i: int) -> None:
    log.write("127.0.0.1", 1_700_000_000.0 + i, "GET", f"/p/{i}", "1.1", 200, 10, "", "ua",
              0.001, "a", 0.001, 200, "ok", "allow", "unknown")


def test_a_full_pipe_never_blocks_and_what_is_dropped_is_counted() -> None:
    r, w = os.pipe()
    try:
        log = AccessLog("-", stdout_fd=w, max_backlog=256 * 1024)
        for i in range(20_000):  # ~2.5 MB of lines into a 64 KiB pipe nobody reads
            _line(log, i)
        log.flush()  # returns: the old code blocked here forever
        assert log.dropped > 0
        os.set_blocking(r, False)
        got = b""
        while True:
            try:
                chunk = os.read(r, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        lines = got.split(b"\n")
        assert lines[-1] == b"" and all(ln.startswith(b"127.0.0.1 - - [") for ln in lines[:-1])
        # what was written plus what waits plus what was dropped is every line
        waiting = sum(len(b.split(b"\n")) - 1 for b in log._backlog)
        assert len(lines) - 1 + waiting + log.dropped == 20_000
        log.flush()  # the reader has caught up: the backlog drains in order
        again = os.read(r, 1 << 16)
        first = int(again.split(b'"GET /p/')[1].split(b" ")[0])
        assert first == int(lines[-2].split(b'"GET /p/')[1].split(b" ")[0]) + 1
    finally:
        os.close(r)
        os.close(w)


async def test_serve_with_an_unread_stdout_keeps_answering(procs: object) -> None:
    backend = await Backend(lambda s: Reply(body=b"ok")).start()
    try:
        proc = procs.python("-m", "shieldwall.cli", "serve",  # type: ignore[attr-defined]
                            "--listen", "127.0.0.1:0", "--backend", backend.url,
                            "--admin", "127.0.0.1:0",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        m = BANNER.search(banner)
        assert m, banner
        port = int(m.group(1))
        # From here on nobody reads stdout. 3,000 requests (most of them limited
        # by the guard: one address) log ~600 KB, far more than the pipe holds;
        # each must still be answered.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        req = b"GET /x HTTP/1.1\r\nHost: shop\r\n\r\n"

        async def run() -> int:
            ok = 0
            for _ in range(30):
                writer.write(req * 100)
                for _ in range(100):
                    head = await reader.readuntil(b"\r\n\r\n")
                    n = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
                    await reader.readexactly(n)
                    ok += head.startswith(b"HTTP/1.1 ")  # served or limited: answered
            return ok

        assert await asyncio.wait_for(run(), 60) == 3000
        writer.close()
        # stdout still works once read again: the waiting lines come out whole
        await asyncio.sleep(1.0)  # a worker tick or two flushes the backlog
        os.set_blocking(proc.stdout.fileno(), False)
        data = b""
        for _ in range(50):
            try:
                chunk = os.read(proc.stdout.fileno(), 1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.1)
                continue
            data += chunk
            if data.count(b'"GET /x HTTP/1.1" ') >= 3000:
                break
        assert data.count(b'"GET /x HTTP/1.1" ') == 3000
        proc.terminate()
        await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
    finally:
        await backend.stop()
