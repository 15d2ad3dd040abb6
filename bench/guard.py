"""How much a decision costs, and how much cheaper refusing is than serving.

Prints one JSON document:

- ``core``: CPU microseconds per ``Gate.decide`` for the pure core, single
  thread, under serve's collector settings, on the allow path (a returning browser with a session cookie, a
  fresh-bucket unknown client), and on the reject paths (banned address,
  over the limit, a challenge page: the same request again, a new target
  each time from one network (the page made from its template), and a new
  network each time (a new signature too)), plus
  ``observe_response`` for a returning browser;
- ``proxy``: through the real proxy (``run_shield`` with the guard wired in,
  in this process) in front of nginx, driven by wrk: requests/s and the
  shield's CPU microseconds per request for proxied requests (``/ok``) and
  rejected ones (``/limited``: 429 from the guard), in the same run, and
  their ratios; and a constant 429 that skips the guard (``/null``), so the
  guard's own share of a rejection shows; and the floor (``floor_*``): a
  uvloop protocol in the same process that answers each read with a fixed
  429 and has no logic at all, kept alive and with a connection per
  request, so what the kernel and the event loop alone cost shows beside it.

Goal (issue 3): a decision under 10 µs; a rejection costs at most a fifth of a
proxied request.

    .venv/bin/python bench/guard.py [--n 200000] [--seconds 5] [--conns 32] [--callgrind]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from shieldwall.guard.decision import RequestFacts
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    """Best of 3 rounds, in this thread's CPU time (on the shared machine wall
    time also counted the slices other processes took between two calls)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time() - t0) / n * 1e6)
    return round(best, 3)


def core(n: int) -> dict[str, Any]:
    now = [1_700_000_000.0]
    # the cyclic collector as serve sets it in every worker (startup frozen,
    # young collections every 10,000 allocations): a decision that keeps
    # state pays its share of collections, at the rate the served shield does
    from shieldwall.proxy.worker import serving_gc

    def clock() -> float:
        return now[0]

    rt = GuardRuntime.from_settings(GuardSettings.model_validate({
        "limits": {"default_route": {"name": "page", "rate": 1e9, "burst": 1e9}}}),
        clock=clock)
    gate = rt.gate
    first = RequestFacts("198.51.100.7", "GET", "/product/42", "", cookie="")
    d = gate.decide(first)
    (_, set_cookie), = gate.observe_response(first, d, 200, [])
    session = set_cookie.decode().split(";", 1)[0]
    browser = RequestFacts("198.51.100.7", "GET", "/product/42", "",
                           user_agent="Mozilla/5.0", cookie=f"theme=dark; {session}")
    plain = RequestFacts("198.51.100.8", "GET", "/product/42", "")
    rt.ban("203.0.113.0/24", ttl=3600)
    banned = RequestFacts("203.0.113.9", "GET", "/", "")
    limited_rt = GuardRuntime.from_settings(GuardSettings.model_validate({
        "limits": {"default_route": {"name": "page", "rate": 0.001, "burst": 1}}}), clock=clock)
    limited = RequestFacts("192.0.2.1", "GET", "/", "")
    limited_rt.gate.decide(limited)
    attack_rt = GuardRuntime.from_settings(GuardSettings.model_validate({
        "mode": "under_attack",
        "limits": {"default_route": {"name": "page", "rate": 1e9, "burst": 1e9}}}), clock=clock)
    challenged = RequestFacts("192.0.2.2", "GET", "/shop", "item=7")
    # (3 rounds of n // 10 calls each: as many distinct requests, so that no
    # round meets the signatures or pages an earlier one made)
    spread = iter([RequestFacts(f"10.{i // 256 % 256}.{i % 256}.{i // 65536 + 9}", "GET", "/shop",
                                f"item={i}") for i in range(3 * max(1, n // 10) + 1)])
    # one client, a new target each time (a randomized flood): the token is
    # reused (half a second per prefix), the page is made from the template
    targets = iter([RequestFacts("192.0.2.3", "GET", "/shop", f"item={i}&p={i % 7}")
                    for i in range(3 * max(1, n // 10) + 1)])
    serving_gc()
    assert gate.decide(browser).action.value == "allow"
    assert gate.decide(banned).action.value == "block"
    assert limited_rt.gate.decide(limited).action.value == "limit"
    assert attack_rt.gate.decide(challenged).action.value == "challenge"
    dec = gate.decide(browser)
    return {
        "allow_returning_browser_us": _per_call_us(lambda: gate.decide(browser), n),
        "allow_unknown_us": _per_call_us(lambda: gate.decide(plain), n),
        "reject_banned_us": _per_call_us(lambda: gate.decide(banned), n),
        "reject_limited_us": _per_call_us(lambda: limited_rt.gate.decide(limited), n),
        # the same request again: the same token, the same page handed out again
        "challenge_page_us": _per_call_us(lambda: attack_rt.gate.decide(challenged), n // 10),
        "challenge_page_new_target_us": _per_call_us(
            lambda: attack_rt.gate.decide(next(targets)), n // 10),
        # a new network every time: a fresh signature and identity per page
        "challenge_page_new_prefix_us": _per_call_us(
            lambda: attack_rt.gate.decide(next(spread)), n // 10),
        "challenge_goal_us": 3.0,
        "how": "CPU time of this thread per call, best of 3 rounds; the collector as "
               "serve sets it (shieldwall.proxy.worker.serving_gc)",
        "observe_response_us": _per_call_us(
            lambda: gate.observe_response(browser, dec, 200, []), n),
        "goal_us": 10.0,
    }


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  fastcgi_temp_path {dir};
  uwsgi_temp_path {dir};
  scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{ return 200 "<html><body>product page</body></html>"; }}
  }}
}}
"""

FRONT_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/front.pid;
error_log {dir}/front-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  fastcgi_temp_path {dir};
  uwsgi_temp_path {dir};
  scgi_temp_path {dir};
  upstream shop {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location /limited {{
      add_header Retry-After 1 always;
      default_type text/plain;
      return 429 "Too many requests.\n";
    }}
    location / {{
      proxy_pass http://shop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"""
"""The floor, side by side: nginx as the front (one worker, no access log, as
the shield runs), proxying to the same upstream (``/ok``) and answering a
constant 429 (``/limited``, what ``limit_req`` answers with once it refuses,
minus its zone lookup)."""


ROUNDS = 2

_FLOOR_BODY = b"Too many requests.\n"
_FLOOR_429 = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
              b"Content-Length: %d\r\nRetry-After: 1\r\n\r\n%s" % (len(_FLOOR_BODY), _FLOOR_BODY))


class _FloorKeepAlive:
    """The floor of a refusal on this host: a uvloop protocol that answers
    every read with a fixed 429 and nothing else (no parsing, no guard, no
    log, no count). What it costs is the kernel's recv and send and the
    event loop's own work: no refusal by a Python server can cost less."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(_FLOOR_429)

    def eof_received(self) -> None:
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class _FloorClose(_FloorKeepAlive):
    """The same for a client that connects per request: answer, then close."""

    def data_received(self, data: bytes) -> None:
        self.transport.write(_FLOOR_429)
        self.transport.close()


class _WithNullRejection:
    """The guard's gate, except that ``/null...`` gets a constant prebuilt 429
    without any guard work: what a rejection costs the proxy alone."""

    def __init__(self, gate: Any) -> None:
        from shieldwall.guard.decision import Action, Decision
        self.gate = gate
        body = b"Too many requests.\n"
        self.reject = Decision(Action.LIMIT, retry_after=1.0, reason="constant", response=(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\nRetry-After: 1\r\n\r\n%s" % (len(body), body)))

    def decide(self, facts: RequestFacts) -> Any:
        if facts.path.startswith("/null"):
            return self.reject
        return self.gate.decide(facts)

    def observe_response(self, facts: RequestFacts, decision: Any, status: int,
                         headers: list[tuple[bytes, bytes]]) -> Any:
        return self.gate.observe_response(facts, decision, status, headers)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wrk(url: str, seconds: int, conns: int, close: bool = False) -> dict[str, Any]:
    """One wrk run. ``close``: every request on a new connection (``Connection:
    close``), as a flood tool that reconnects each time."""
    import asyncio
    import re
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out = (await asyncio.wait_for(proc.communicate(), seconds + 30))[0].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    r: dict[str, Any] = {"rps": float(rps.group(1)) if rps else 0.0,
                         "requests": int(total.group(1)) if total else 0,
                         "non_2xx": int(non2xx.group(1)) if non2xx else 0}
    if errors:
        r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                      (int(g) for g in errors.groups()), strict=True))
    return r


_SYSCALLS = ("read", "write", "writev", "recvfrom", "sendto", "epoll_wait", "epoll_pwait",
             "epoll_ctl", "accept4", "close", "shutdown", "setsockopt", "getsockname",
             "getpeername", "ioctl", "fcntl")


def _cpu_of(pid: int | None) -> tuple[float, float]:
    """User and system CPU seconds of this process (``pid`` None: ourselves,
    threads included) or of another one (/proc/PID/stat, clock ticks)."""
    import os
    import resource
    if pid is None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime, ru.ru_stime
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def _perf_start(pid: int) -> Any:
    """``perf stat`` counting the syscalls of ``pid`` (tracepoints: counted in
    the kernel, no stop per call as strace's), or None without perf."""
    import asyncio
    import shutil
    if shutil.which("perf") is None:
        return None
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{n}" for n in _SYSCALLS]
    proc = await asyncio.create_subprocess_exec(
        "perf", "stat", "-i", "-x,", "-e", ",".join(events), "-p", str(pid),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    await asyncio.sleep(0.3)  # (attached before the load starts)
    return proc


async def _perf_stop(proc: Any, requests: int) -> dict[str, Any]:
    import signal
    if proc is None:
        return {"skipped": "needs perf"}
    proc.send_signal(signal.SIGINT)
    err = (await proc.communicate())[1].decode()
    counts: dict[str, int] = {}
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].isdigit():
            name = parts[2]
            counts[name.split("sys_enter_", 1)[1] if "sys_enter_" in name else "all"] = \
                int(parts[0])
    if "all" not in counts:
        return {"skipped": f"perf stat gave no counts: {err.strip()[-200:]}"}
    n = max(1, requests)
    all_ = counts.pop("all")
    return {"per_request": round(all_ / n, 2),
            "by_call": {k: round(v / n, 2) for k, v in sorted(counts.items(),
                                                               key=lambda kv: -kv[1]) if v}}


async def _run_case(url: str, seconds: int, conns: int, close: bool,
                    pid: int | None) -> dict[str, Any]:
    u0, s0 = _cpu_of(pid)
    r = await _wrk(url, seconds, conns, close)
    u1, s1 = _cpu_of(pid)
    n = max(1, r["requests"])
    r["cpu_us_per_request"] = round((u1 - u0 + s1 - s0) / n * 1e6, 2)
    r["user_us"] = round((u1 - u0) / n * 1e6, 2)
    r["sys_us"] = round((s1 - s0) / n * 1e6, 2)
    return r


async def _banned(rt: GuardRuntime, base: str, seconds: int, conns: int) -> dict[str, Any]:
    """CPU per connection closed at accept (wrk reconnecting each time, its
    address banned), counted by the gate's ``block:accept``."""
    rt.ban("127.0.0.1", ttl=3600, reason="bench")
    try:
        before = rt.gate.counts.get("block:accept", 0)
        u0, s0 = _cpu_of(None)
        r = await _wrk(base + "/limited", seconds, conns, True)
        u1, s1 = _cpu_of(None)
        n = max(1, rt.gate.counts.get("block:accept", 0) - before)
    finally:
        rt.unban("127.0.0.1")
    return {"connections_closed": n, "wrk_socket_errors": r.get("socket_errors", {}),
            "cpu_us_per_connection": round((u1 - u0 + s1 - s0) / n * 1e6, 2),
            "user_us": round((u1 - u0) / n * 1e6, 2), "sys_us": round((s1 - s0) / n * 1e6, 2)}


async def _proxy(seconds: int, conns: int, syscalls: bool) -> dict[str, Any]:
    import asyncio
    import logging
    import os
    import shutil
    import subprocess
    import tempfile

    from shieldwall.config import build_config
    from shieldwall.proxy.wiring import Wiring
    from shieldwall.proxy.worker import run_shield

    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        return {"skipped": "needs wrk and nginx (make installs them)"}
    logging.getLogger("shieldwall").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="swbench")
    up_port = _free_port()
    front_port = _free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(dir=tmp, port=up_port))
    with open(os.path.join(tmp, "front.conf"), "w") as f:
        f.write(FRONT_CONF.format(dir=tmp, port=front_port, up=up_port))
    procs = [subprocess.Popen(["nginx", "-c", os.path.join(tmp, name), "-p", tmp],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name in ("nginx.conf", "front.conf")]
    front = procs[1]
    try:
        for port in (up_port, front_port):
            for _ in range(100):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        rt = GuardRuntime.from_settings(GuardSettings.model_validate({
            "allow_crawlers": False,
            "limits": {
                "routes": [{"name": "limited", "match": ["/limited*"], "rate": 0.001,
                            "burst": 1}],
                "default_route": {"name": "page", "rate": 1e9, "burst": 1e9},
                "prefix_factor": {"24": 1.0},
                # wrk's one address is refused on /limited all along: it must not
                # become a suspect (shed and challenged) for the /ok rounds
                "strikes_to_suspect": 1_000_000_000}}))
        config = build_config({
            "listen": "127.0.0.1:0", "access_log": "off",
            "admin": {"listen": "127.0.0.1:0", "token": "bench"},
            "backends": [{"url": f"http://127.0.0.1:{up_port}"}],
            "upstream": {"health": {"enabled": False}}})
        await rt.start()
        results: dict[str, Any] = {}
        counted: dict[str, Any] = {}
        try:
            # No admission queue: one wrk client saturating nginx would be
            # "pressure", and an unknown client without browser conduct is then
            # challenged (most /ok answers were 403s): the bench compares a
            # proxied 200 with a refusal, not the overload defence.
            # Two shields: the guard's own gate (its early path refuses from the
            # first bytes), and the wrapped one whose /null 429 costs no guard
            # work but goes the parsed path (the wrapper has no early_wanted).
            loop = asyncio.get_running_loop()
            floor_ka = await loop.create_server(_FloorKeepAlive, "127.0.0.1", 0)
            floor_cl = await loop.create_server(_FloorClose, "127.0.0.1", 0)
            fka = f"http://127.0.0.1:{floor_ka.sockets[0].getsockname()[1]}"
            fcl = f"http://127.0.0.1:{floor_cl.sockets[0].getsockname()[1]}"
            async with run_shield(config, Wiring(gate=rt.gate)) as sh, \
                    run_shield(config, Wiring(gate=_WithNullRejection(rt.gate))) as sh0:
                base = f"http://127.0.0.1:{sh.port}"
                nbase = f"http://127.0.0.1:{front_port}"
                cases: list[tuple[str, str, bool, int | None]] = [
                    ("proxied", base + "/ok", False, None),
                    ("rejected", base + "/limited", False, None),
                    ("rejected_parsed_path_constant_429", f"http://127.0.0.1:{sh0.port}/null",
                     False, None),
                    ("rejected_new_connection_each", base + "/limited", True, None),
                    ("nginx_proxied", nbase + "/ok", False, front.pid),
                    ("nginx_rejected", nbase + "/limited", False, front.pid),
                    ("nginx_rejected_new_connection_each", nbase + "/limited", True,
                     front.pid),
                    ("floor_fixed_429", fka + "/limited", False, None),
                    ("floor_fixed_429_new_connection_each", fcl + "/limited", True, None),
                ]
                for _, url, close, _pid in cases:  # warm up every path
                    await _wrk(url, 1, conns, close)
                for _ in range(ROUNDS):  # alternate; keep each path's best round
                    for name, url, close, pid in cases:
                        r = await _run_case(url, seconds, conns, close, pid)
                        best = results.get(name)
                        if best is None or r["cpu_us_per_request"] < best["cpu_us_per_request"]:
                            results[name] = r
                if syscalls:
                    for name, url, close, pid in cases:
                        perf = await _perf_start(os.getpid() if pid is None else pid)
                        r = await _wrk(url, 2, conns, close)
                        counted[name] = await _perf_stop(perf, r["requests"])
                # last: wrk's own address banned, so every connection is closed
                # at accept (no transport, no protocol): the cost per connection
                results["banned_closed_at_accept"] = await _banned(rt, base, seconds, conns)
        finally:
            await rt.stop()
            floor_ka.close()
            floor_cl.close()

        def ratio(a: str, b: str) -> float:
            return round(results[a]["cpu_us_per_request"]
                         / max(results[b]["cpu_us_per_request"], 1e-9), 3)

        p, j = results["proxied"], results["rejected"]
        out: dict[str, Any] = {
            "load": f"wrk -t1 -c{conns} -d{seconds}s, upstream nginx (return 200), "
                    f"shield in this process (uvloop), nginx front (1 worker) beside it, "
                    f"best of {ROUNDS} alternating rounds; cpu = user + sys of the "
                    "answering process per answered request",
            **results,
            "rps_ratio_rejected_over_proxied": round(j["rps"] / max(p["rps"], 1e-9), 2),
            "cpu_ratio_rejected_over_proxied": ratio("rejected", "proxied"),
            "cpu_ratio_parsed_path_constant_429_over_proxied": ratio(
                "rejected_parsed_path_constant_429", "proxied"),
            "nginx_cpu_ratio_rejected_over_proxied": ratio("nginx_rejected", "nginx_proxied"),
            "cpu_ratio_new_connection_each_over_proxied": ratio(
                "rejected_new_connection_each", "proxied"),
            "nginx_cpu_ratio_new_connection_each_over_proxied": ratio(
                "nginx_rejected_new_connection_each", "nginx_proxied"),
            "goal_cpu_ratio": 0.2,
            # the floor: a fixed 429 from a protocol with no logic at all, same
            # loop, same process, same wrk; below it no refusal can go here
            "floor_cpu_ratio_over_proxied": ratio("floor_fixed_429", "proxied"),
            "floor_cpu_ratio_new_connection_each_over_proxied": ratio(
                "floor_fixed_429_new_connection_each", "proxied"),
            "rejected_over_floor": ratio("rejected", "floor_fixed_429"),
            "rejected_new_connection_each_over_floor": ratio(
                "rejected_new_connection_each", "floor_fixed_429_new_connection_each"),
        }
        if counted:
            out["syscalls"] = {"how": "perf stat -e raw_syscalls:sys_enter (+ per call) on the "
                                      "answering process, 2 s of wrk per case; per answered "
                                      "request", **counted}
        return out
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def proxy(seconds: int, conns: int, syscalls: bool = True) -> dict[str, Any]:
    try:
        import shieldwall.proxy.worker  # noqa: F401
    except ImportError:
        return {"skipped": "the proxy's run_shield helper is not available"}
    import uvloop
    # the event loop the shield runs on (shieldwall.proxy.supervisor): the
    # stdlib's selector loop costs several microseconds more per request
    return uvloop.run(_proxy(seconds, conns, syscalls))


def instructions() -> dict[str, Any]:
    """The same comparison without the machine's noise: instructions per
    request on the request path (bench/proxy_callgrind.py, default wiring,
    proxied vs answered with the guard's 429; user space only, so the
    refusal's saved syscalls are not in it)."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("valgrind") is None:
        return {"skipped": "needs valgrind"}
    script = Path(__file__).with_name("proxy_callgrind.py")
    run = subprocess.run([sys.executable, str(script), "default", "refused"],
                         capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        return {"skipped": f"proxy_callgrind.py failed: {run.stderr.strip()[-300:]}"}
    cg = json.loads(run.stdout)
    key = "request_path_instructions_per_request"
    p, r = cg["default"][key], cg["refused"][key]
    return {"proxied": p, "refused": r, "ratio_refused_over_proxied": round(r / p, 3),
            "goal_ratio": 0.2, "command": "bench/proxy_callgrind.py default refused"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="decisions per measurement")
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration per path")
    ap.add_argument("--conns", type=int, default=32, help="wrk connections")
    ap.add_argument("--no-syscalls", action="store_true",
                    help="skip counting syscalls per request (perf stat)")
    ap.add_argument("--callgrind", action="store_true",
                    help="also instructions per request, proxied vs refused (valgrind, ~1 min)")
    args = ap.parse_args()
    import logging
    logging.getLogger("shieldwall").setLevel(logging.ERROR)
    out = {
        "bench": "guard",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "core": core(args.n),
        "proxy": proxy(args.seconds, args.conns, not args.no_syscalls),
    }
    if args.callgrind:
        out["instructions"] = instructions()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
