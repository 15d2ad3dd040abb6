"""Instructions per proxied request, counted by callgrind: a noise-free A/B.

The shared machine moves wall-clock and even CPU-time figures by 20-50 %
between runs, too much to judge a 3 % change. This counts the instructions
the shield executes (user space only: syscalls and the kernel's TCP work are
not counted) for N sequential keep-alive requests on one connection, after a
warm-up, with instrumentation switched on only around them. Repeat runs agree
within ~0.5 %.

Two shields, as in bench/proxy.py: ``bare`` (no guard, no detector) and
``default`` (guard + detector, mode normal, page rate raised for the one
client, admission's limit fixed above the connections as bench/proxy.py has
it (adaptive, valgrind's slowness lowered it and the queue that stood made
the guard challenge), the session cookie a first request got sent back as a
browser does).

``request_path_instructions_per_request`` leaves out the background tasks
(asyncio ``task_step``: the detector's and console's ticks, the sweeper):
under valgrind a second holds ~40 requests instead of thousands, so their
once-a-second work would be charged to a few requests;
``background_instructions_per_second`` gives it per wall second instead.
``instructions_per_request`` is everything, as before.

``--whole``: the whole process instead, background ticks included. The
detector and the console count each request at their once-a-second tick,
outside the request path, so the request path alone under-counts what a
request costs. Here a quiet stretch is counted first (what the process
spends per second with no traffic), then N requests from ``--conns``
keep-alive connections at once and the ticks that take their rows (a
2.5 s tail); ``whole_instructions_per_request`` = (the load stretch's
instructions - the quiet rate x its wall time) / N. ``top`` lists the
functions with the most inclusive instructions per request (mypyc's
compiled functions by name; interpreted code shows as the eval loop).

``--browser``: the requests as a shopper's browser sends them, a page and
its assets, Accept and Referer moving from one request to the next
(:func:`browser_request`); wrk's requests, and a flood tool's, repeat byte
for byte, and what a connection remembers of its last request then always
applies (a shopper's costs ~2.8x in instructions on the bare data path:
issue 11's figures are a flood's). The guard refuses part of one client's
thousand pages and assets a second (the default wiring's figure is then a
mix of refusals): ``bare`` is the one to read.

``--cache N``: cache misses per request with N keep-alive connections held
open and every one of them in flight (what wrk -cN does), for the shields
asked and for nginx as the proxy, under one cache model (callgrind
``--cache-sim``: a 48 KiB L1d, and a 1 MiB "LL" standing for this machine's
per-core L2; no L3, no kernel). At 1,000 connections the shield's CPU per
request grows ~2x from 100 (nginx's ~1.6x) while its instructions barely
move: this shows whether it is our memory traffic (issue 11).

Usage: .venv/bin/python bench/proxy_callgrind.py [--requests 1000] [--keep DIR] [--whole]
       [--conns 16] [--cache 1000] [bare default refused]
(``--keep DIR``: leave the callgrind files there, for ``callgrind_annotate --inclusive=yes``.)
Prints JSON. Needs valgrind and nginx (the backend); loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import proxy as bench  # the sibling bench: its nginx config helpers

SHIELD = """
import asyncio, sys, uvloop
from shieldwall.config import load_config
from shieldwall.proxy.worker import run_shield, serving_gc
async def main():
    async with run_shield(load_config(sys.argv[1]), admin=False) as sh:
        serving_gc()  # as serve does
        print(sh.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
uvloop.run(main())
"""

WIRING = {
    "bare": "[guard]\nenabled = false\n[detect]\nenabled = false\n",
    "default": """[guard]
mode = "normal"
[guard.limits.default_route]
name = "page"
rate = 10000000.0
burst = 10000000.0
[guard.admission]
limit = 4096
adaptive = false
""",
    # the default wiring refusing every request (429 from the guard's limit)
    "refused": """[guard]
mode = "normal"
[[guard.limits.routes]]
name = "limited"
match = ["/limited*"]
rate = 0.001
burst = 1.0
[guard.limits.default_route]
name = "page"
rate = 10000000.0
burst = 10000000.0
[guard.admission]
limit = 4096
adaptive = false
""",
}
WIRING["refused_varied"] = WIRING["refused"]
"""The same refusal, each request with its own query string (a randomized
flood): nothing one request read can be reused for the next."""
PATHS = {"refused": "/limited", "refused_varied": "/limited"}
VARIED = {"refused_varied"}


_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "text/css,*/*;q=0.1", "image/avif,image/webp,image/apng,*/*;q=0.8", "*/*")
_BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36")


def browser_request(i: int, port: int, cookie: str) -> bytes:
    """The i-th request of a shopper's browser on one connection: a page or
    one of its assets, each kind with its own Accept, the Referer the page
    it came from. Its header lines move from one request to the next, as a
    browser's do (wrk's, and a flood tool's, repeat byte for byte)."""
    page = i // 4
    kind = i % 4
    target = f"/p/{page % 50}" if kind == 0 else f"/static/{page % 50}-{kind}.{('css', 'png', 'js')[kind - 1]}"
    referer = f"http://127.0.0.1:{port}/p/{(page - 1) % 50 if kind == 0 else page % 50}"
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {_BROWSER}\r\n"
            f"Accept: {_ACCEPT[kind]}\r\nAccept-Language: en-GB,en;q=0.9\r\n"
            f"Accept-Encoding: gzip, deflate, br\r\nReferer: {referer}\r\n"
            + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()


def requests(port: int, n: int, cookie: str = "", path: str = "/", vary: bool = False,
             browser: bool = False) -> str:
    """n sequential GETs on one connection (``vary``: each with its own
    query string; ``browser``: as a shopper's browser asks, browser_request);
    the last response's head."""
    def req(i: int) -> bytes:
        if browser:
            return browser_request(i, port, cookie)
        target = f"{path}?q={i:06d}" if vary else path
        return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench\r\n"
                "Accept: */*\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()
    head = b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        for i in range(n):
            s.sendall(req(i))
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("the shield closed the connection")
                buf += chunk
                i = buf.find(b"\r\n\r\n")
                m = re.search(rb"content-length: (\d+)", buf[:i], re.I) if i >= 0 else None
                if m and len(buf) >= i + 4 + int(m.group(1)):
                    break
            head = buf[:i]
    return head.decode("latin-1")


def parallel(port: int, n: int, conns: int, cookie: str, path: str) -> None:
    """n requests over ``conns`` keep-alive connections at once (one thread each)."""
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            requests(port, k, cookie, path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in per if k]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def _annotate(path: Path) -> str:
    return subprocess.run(["callgrind_annotate", "--inclusive=yes", str(path)],
                          capture_output=True, text=True, check=True).stdout


def _total(text: str) -> int:
    total = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)
    if total is None:
        raise RuntimeError("callgrind recorded nothing")
    return int(total.group(1).replace(",", ""))


def _top(text: str, n: int, per: int, skip: int) -> dict[str, int]:
    """The ``n`` functions with the most inclusive instructions, per request
    (those below ``skip`` per request left out)."""
    out: dict[str, int] = {}
    for m in re.finditer(r"^\s*([\d,]+) \([\s\d.]+%\)\s+(\S+?)(?: \[.*)?$", text, re.M):
        v = int(m.group(1).replace(",", "")) // per
        if v < skip or m.group(2) == "PROGRAM":
            continue
        name = m.group(2).rsplit(":", 1)[-1]
        out.setdefault(name, v)
        if len(out) >= n:
            break
    return out


@contextmanager
def _shield(work: Path, backend_port: int, wiring: str, out: Path,
            tool_args: tuple[str, ...] = ()) -> Iterator[tuple[int, int, str, str]]:
    """One shield of this wiring under callgrind (instrumentation off until asked):
    yields its pid, port, the session cookie its first answer set and the path to
    ask; then stops it cleanly (its callgrind file written), killed if it hangs."""
    conf = work / f"{wiring}.toml"
    conf.write_text(config_text(work, backend_port, wiring))
    shield = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         *tool_args, sys.executable, "-c", SHIELD, str(conf)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=bench.raise_nofile)
    try:
        assert shield.stdout is not None and shield.stdin is not None
        port = int(shield.stdout.readline())
        m = re.search(r"set-cookie: ([^;]+);", requests(port, 1), re.I)
        yield shield.pid, port, m.group(1) if m else "", PATHS.get(wiring, "/")
        shield.stdin.write(b"\n")
        shield.stdin.flush()
        shield.wait(timeout=300)
    finally:
        if shield.poll() is None:
            os.killpg(shield.pid, signal.SIGKILL)
            shield.wait()


def measure_whole(work: Path, backend_port: int, wiring: str, n: int,
                  conns: int, quiet: float, tail: float) -> dict[str, object]:
    """The whole process per request, background ticks included (see --whole)."""
    out = work / f"{wiring}-whole.callgrind"
    with _shield(work, backend_port, wiring, out) as (pid, port, cookie, path):
        parallel(port, 400, conns, cookie, path)  # warm up
        time.sleep(tail)  # the warm-up's rows taken by the ticks
        _control(pid, "-i", "on")
        _control(pid, "-z")
        t0 = time.monotonic()
        time.sleep(quiet)
        _control(pid, "-d")  # dump 1: the quiet stretch
        quiet_wall = time.monotonic() - t0
        t0 = time.monotonic()
        parallel(port, n, conns, cookie, path)
        load_wall = time.monotonic() - t0
        time.sleep(tail)
        _control(pid, "-d")  # dump 2: the load and its ticks
        wall = time.monotonic() - t0
        _control(pid, "-i", "off")
    outcomes: dict[str, int] = {}
    for line in (work / f"{wiring}-access.log").read_text().splitlines():
        m = re.search(r'" (\d{3}) .* d=(\S+) ', line)
        k = f"{m.group(1)} d={m.group(2)}" if m else "?"
        outcomes[k] = outcomes.get(k, 0) + 1
    quiet_ir = _total(_annotate(Path(f"{out}.1")))
    load_text = _annotate(Path(f"{out}.2"))
    load_ir = _total(load_text)
    rate = quiet_ir / max(quiet_wall, 1e-9)
    return {"requests": n, "connections": conns,
            "whole_instructions_per_request": round((load_ir - rate * wall) / n),
            "quiet_instructions_per_second": round(rate),
            "load_instructions_per_request_raw": round(load_ir / n),
            "wall_s_under_valgrind": round(load_wall, 1),
            "access_log": outcomes,
            "top": _top(load_text, 40, n, 1000)}


CACHE_MODEL = ("--cache-sim=yes", "--D1=49152,12,64", "--LL=1048576,16,64")
"""The cache model of ``--cache``: this machine's L1d (48 KiB, 12-way) and,
as the last level, its per-core L2 (1 MiB, 16-way); 64-byte lines."""


class HeldConnections:
    """``conns`` keep-alive connections opened once and kept; :meth:`run`
    sends n requests over them with every connection's request in flight at
    once (one selector, no threads), as wrk does: between two requests on one
    connection the proxy serves all the others (the reuse distance that
    decides what is still in its caches)."""

    def __init__(self, port: int, conns: int, cookie: str) -> None:
        self.request = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench\r\n"
                        "Accept: */*\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "")
                        + "\r\n").encode()
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]

    def run(self, n: int) -> None:
        left = n
        got: dict[socket.socket, bytes] = {}
        with selectors.DefaultSelector() as sel:
            for s in self.socks[:n]:
                s.sendall(self.request)
                left -= 1
                got[s] = b""
                sel.register(s, selectors.EVENT_READ)
            while got:
                ready = sel.select(timeout=120)
                if not ready:
                    raise RuntimeError("no answer in 120 s")
                for key, _ in ready:
                    c = key.fileobj
                    assert isinstance(c, socket.socket)
                    chunk = c.recv(65536)
                    if not chunk:
                        raise RuntimeError("the proxy closed a kept-alive connection")
                    buf = got[c] + chunk
                    i = buf.find(b"\r\n\r\n")
                    m = re.search(rb"content-length: (\d+)", buf[:i], re.I) if i >= 0 else None
                    if not (m and len(buf) >= i + 4 + int(m.group(1))):
                        got[c] = buf
                    elif left > 0:
                        c.sendall(self.request)
                        left -= 1
                        got[c] = b""
                    else:
                        del got[c]
                        sel.unregister(c)

    def close(self) -> None:
        for s in self.socks:
            s.close()


def _events(path: Path) -> tuple[dict[str, int], str]:
    """Every event's program total, and the annotation sorted by LL read misses."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--sort=DLmr", str(path)],
                          capture_output=True, text=True, check=True).stdout
    shown = re.search(r"^Events shown:\s+(.*)$", text, re.M)
    totals = re.search(r"^(.*?)\s+PROGRAM TOTALS", text, re.M)
    if shown is None or totals is None:
        raise RuntimeError("callgrind recorded nothing")
    values = [int(v.replace(",", "")) for v in re.findall(r"([\d,]+) \(", totals.group(1))]
    return dict(zip(shown.group(1).split(), values, strict=True)), text


def _cache_result(path: Path, n: int, conns: int) -> dict[str, object]:
    totals, text = _events(path)
    names = list(totals)
    top: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*((?:[\d,]+ \([\s\d.]+%\)\s+|\.\s+)+)(\S+)", line)
        if m is None or "PROGRAM TOTALS" in line:
            continue
        cells = re.findall(r"([\d,]+) \(|(?<!\S)\.(?!\S)", m.group(1))
        if len(cells) != len(names):
            continue
        row = dict(zip(names, (int(c.replace(",", "")) if c else 0 for c in cells), strict=True))
        top[m.group(2).rsplit(":", 1)[-1]] = round((row["DLmr"] + row["DLmw"]) / n, 2)
        if len(top) >= 15:
            break
    return {"connections": conns, "requests": n,
            "per_request": {k: round(v / n, 1) for k, v in totals.items()},
            "ll_misses_per_request": round((totals["DLmr"] + totals["DLmw"]) / n, 1),
            "top_ll_misses_per_request": top}


def measure_cache(work: Path, backend_port: int, wiring: str, n: int,
                  conns: int) -> dict[str, object]:
    """One shield of this wiring (see --cache)."""
    out = work / f"{wiring}-cache.callgrind"
    with _shield(work, backend_port, wiring, out, CACHE_MODEL) as (pid, port, cookie, _path):
        held = HeldConnections(port, conns, cookie)
        try:
            held.run(conns * 3)  # warm up: every connection, the pools, the caches
            _control(pid, "-i", "on")
            held.run(n)
            _control(pid, "-i", "off")
        finally:
            held.close()
    return _cache_result(out, n, conns)


def measure_cache_nginx(work: Path, backend_port: int, n: int, conns: int) -> dict[str, object]:
    """nginx as the proxy (bench/proxy.py's, one process: no master) under the same model."""
    port = bench.free_port()
    conf = bench.nginx_conf(work, "proxy", bench.nginx_proxy(work, backend_port, port, "600s"))
    conf.write_text("master_process off;\n" + conf.read_text())
    out = work / "nginx-cache.callgrind"
    nginx = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         *CACHE_MODEL, shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf),
         "-p", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=bench.raise_nofile)
    try:
        bench.wait_port(port, 60)
        held = HeldConnections(port, conns, "")
        try:
            held.run(conns * 3)
            _control(nginx.pid, "-i", "on")
            held.run(n)
            _control(nginx.pid, "-i", "off")
            _control(nginx.pid, "-d")
        finally:
            held.close()
        for _ in range(100):
            if Path(f"{out}.1").exists():
                break
            time.sleep(0.1)
        return _cache_result(Path(f"{out}.1"), n, conns)
    finally:
        os.killpg(nginx.pid, signal.SIGTERM)
        try:
            nginx.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(nginx.pid, signal.SIGKILL)
            nginx.wait()


def config_text(work: Path, backend_port: int, wiring: str) -> str:
    return f"""
listen = "127.0.0.1:0"
access_log = "{work}/{wiring}-access.log"
[[backends]]
url = "http://127.0.0.1:{backend_port}"
[limits]
max_connections = 30000
max_connections_per_client = 30000
[timeouts]
header = 600.0
idle = 600.0
upstream_response = 600.0
[upstream]
keepalive = 1024
{WIRING[wiring]}"""


def measure(work: Path, backend_port: int, wiring: str, n: int,
            browser: bool = False) -> dict[str, object]:
    out = work / f"{wiring}.callgrind"
    vary = wiring in VARIED
    with _shield(work, backend_port, wiring, out) as (pid, port, cookie, path):
        # warm up: pools, caches, the detector's windows
        requests(port, 200, cookie, path, vary, browser)
        _control(pid, "-i", "on")
        t0 = time.monotonic()
        requests(port, n, cookie, path, vary, browser)
        wall = time.monotonic() - t0
        _control(pid, "-i", "off")
    text = _annotate(out)
    ir = _total(text)
    # Background tasks (the detector's and the console's once-a-second ticks,
    # the sweeper, the guard's sync) run as asyncio tasks; the request path
    # creates none. Under valgrind the 1,000 requests take 20-40 s (more when
    # the machine is loaded), so the ticks would be spread over ~40 requests
    # a second instead of thousands: counted apart, per second.
    bg = re.search(r"([\d,]+) \( *[\d.]+%\)\s+\S*_asynciomodule\.c:task_step \[", text)
    bg_ir = int(bg.group(1).replace(",", "")) if bg else 0
    return {"requests": n, "instructions_per_request": round(ir / n),
            "request_path_instructions_per_request": round((ir - bg_ir) / n),
            "background_instructions_per_second": round(bg_ir / max(wall, 1e-9)),
            "session_cookie": bool(cookie), "wall_s_under_valgrind": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="copy the callgrind files into this directory")
    ap.add_argument("--whole", action="store_true",
                    help="the whole process per request, background ticks included")
    ap.add_argument("--conns", type=int, default=16, help="--whole: connections at once")
    ap.add_argument("--quiet", type=float, default=3.0, help="--whole: seconds of no traffic")
    ap.add_argument("--browser", action="store_true",
                    help="requests as a shopper's browser sends them (header lines that move)")
    ap.add_argument("--cache", type=int, default=0, metavar="N",
                    help="cache misses per request at N held connections, nginx beside")
    ap.add_argument("--tail", type=float, default=2.5,
                    help="--whole: seconds counted after the last request (its ticks)")
    ap.add_argument("wirings", nargs="*",
                    help="bare, default, refused (a 429 from the guard), refused_varied (the same, "
                         "each request its own query) (all when none given)")
    args = ap.parse_args()
    wirings = args.wirings or list(WIRING)
    for w in wirings:
        if w not in WIRING:
            sys.exit(f"unknown wiring {w!r}: expected one of {', '.join(WIRING)}")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian package valgrind)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work = Path(tempfile.mkdtemp(prefix="shieldwall-callgrind-"))
    backend = None
    try:
        port = bench.free_port()
        conf = bench.nginx_conf(work, "backend", f"""
  access_log off;
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_timeout 600s;
           location / {{ default_type text/plain; return 200 "{bench.BODY}"; }} }}""")
        backend = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work)],
                                   start_new_session=True)
        bench.wait_port(port)
        if args.cache:
            bench.raise_nofile()
            n = max(args.requests, 4 * args.cache)  # every connection asked 4 times or more
            out = {w: measure_cache(work, port, w, n, args.cache) for w in wirings}
            out["nginx"] = measure_cache_nginx(work, port, n, args.cache)
        elif args.whole:
            out = {w: measure_whole(work, port, w, args.requests, args.conns, args.quiet,
                                    args.tail) for w in wirings}
        else:
            out = {w: measure(work, port, w, args.requests, args.browser) for w in wirings}
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in work.glob("*.callgrind*"):
                shutil.copy(f, args.keep / f.name)
        print(json.dumps(out, indent=2))
    finally:
        if backend is not None and backend.poll() is None:
            os.killpg(backend.pid, signal.SIGTERM)
            backend.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
