"""`shieldwall serve --workers 2` without Redis acts as one shield: the
operator's ban and mode reach every worker (new connections are spread over
the workers by SO_REUSEPORT, so each stage sends many fresh connections), a
worker the supervisor restarts comes up with the current state, and one
worker's detector verdict reaches the others."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shieldwall.config import build_config
from shieldwall.detect.runtime import DetectRuntime
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.synth import generate, make_scenario
from shieldwall.guard.decision import Mode
from shieldwall.guard.runtime import PEER_FRESH, GuardRuntime
from shieldwall.guard.settings import GuardSettings
from shieldwall.proxy.fanout import PEER_TIMEOUT, READ_TIMEOUT, Peers, socket_path
from shieldwall.proxy.wiring import PeerHooks, Service, Wiring, _mode_setter
from shieldwall.proxy.worker import Worker, listen_socket
from tiny_shop import Shop, running_shop

BANNER = re.compile(r"listening on http://127\.0\.0\.1:(\d+) admin http://127\.0\.0\.1:(\d+)")
TOKEN = "workers-shared-token"
FRESH = 24
"""Fresh connections per stage: all landing on one of two workers has odds 2**-23."""
CHALLENGE = 'name="shieldwall-challenge"'


@pytest.fixture
def shop() -> Iterator[str]:
    with running_shop() as url:
        yield url


def serve_workers(procs: Any, shop: str, tmp_path: Path,
                  *extra: str) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {**os.environ, "SHIELDWALL_ADMIN_TOKEN": TOKEN}
    err = (tmp_path / "serve.err").open("wb")
    proc = procs.python("-m", "shieldwall.cli", "serve", "--listen", "127.0.0.1:0",
                        "--admin", "127.0.0.1:0", "--workers", "2", "--backend", shop, *extra,
                        stdout=subprocess.PIPE, stderr=err, env=env)
    line = proc.stdout.readline().decode()
    m = BANNER.search(line)
    assert m, (line, (tmp_path / "serve.err").read_text())
    return proc, f"http://127.0.0.1:{m.group(1)}", f"http://127.0.0.1:{m.group(2)}"


def cli(admin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIELDWALL_ADMIN_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "shieldwall.cli", *args, "--admin", admin],
                          capture_output=True, text=True, env=env, timeout=30)


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        # no answer at all: a banned address's connection closed at accept
        self.status_code = int(head.split(b" ", 2)[1]) if head else CLOSED
        self.text = body.decode("utf-8", "replace")
        self.set_cookies = [line.split(b":", 1)[1].strip().decode("latin-1")
                            for line in head.split(b"\r\n")[1:]
                            if line.lower().startswith(b"set-cookie:")]


CLOSED = 0
"""Status of an answer that never came: the connection was closed at accept."""
REFUSED = (403, CLOSED)


def blocks(counters: dict[str, int]) -> int:
    """Refusals of a banned address: answered 403 (block) or closed at accept (block:accept)."""
    return counters.get("block", 0) + counters.get("block:accept", 0)


def fresh_gets(url: str, n: int = FRESH, cookie: str = "") -> list[Answer]:
    """``n`` requests, each on a new TCP connection (the kernel picks the worker)."""
    port = int(url.rsplit(":", 1)[1])
    extra = f"Cookie: {cookie}\r\n".encode() if cookie else b""
    out = []
    for i in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /static/%d.css HTTP/1.1\r\nHost: shop\r\n%s"
                         b"Connection: close\r\n\r\n" % (i, extra))
            raw = b""
            try:
                while chunk := conn.recv(65536):
                    raw += chunk
            except ConnectionResetError:
                pass
        out.append(Answer(raw))
    return out


def status(admin: str, via_cli: bool = False) -> dict[str, Any]:
    """GET /api/status as ``shieldwall status --json`` prints it."""
    if via_cli:
        done = cli(admin, "status", "--json")
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data
    r = httpx.get(admin + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"},
                  timeout=10)
    assert r.status_code == 200, r.text
    data = r.json()
    return data


def workers_of(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def replace_worker(proc: subprocess.Popen[bytes], victim: int, admin: str) -> dict[str, Any]:
    """SIGKILL one worker; wait until the supervisor's replacement serves its
    private socket (it restores the peer state before that) and every worker
    answers the status fan-out."""
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kids = workers_of(proc.pid)
        if len(kids) == 2 and victim not in kids:
            st = status(admin)
            if st["workers"]["answered"] == 2:
                return st
        time.sleep(0.1)
    raise AssertionError(f"worker {victim} was not replaced: {workers_of(proc.pid)}")


def test_a_cli_ban_holds_on_every_worker_and_on_a_restarted_one(
        procs: Any, shop: str, tmp_path: Path) -> None:
    proc, url, admin = serve_workers(procs, shop, tmp_path)
    assert all(r.status_code == 200 for r in fresh_gets(url))
    before = status(admin, via_cli=True)
    assert before["workers"]["total"] == 2 and before["workers"]["answered"] == 2
    served = [v["counters"].get("allow", 0) for v in before["workers"]["views"]]
    assert len(served) == 2 and all(n > 0 for n in served), f"not both workers served: {served}"
    assert before["counters"]["allow"] == sum(served) == FRESH

    done = cli(admin, "ban", "127.0.0.1", "--ttl", "1h", "--reason", "workers")
    assert done.returncode == 0, done.stderr
    hits = len(Shop.hits)
    refused = fresh_gets(url)
    assert all(r.status_code in REFUSED for r in refused), [r.status_code for r in refused]
    assert not any(CHALLENGE in r.text for r in refused), "a ban blocks, it does not challenge"
    assert len(Shop.hits) == hits, "a banned request reached the shop"
    st = status(admin)
    assert [v["bans"] for v in st["workers"]["views"]] == [1, 1] and st["workers"]["agree"]
    assert all(blocks(v["counters"]) > 0 for v in st["workers"]["views"])
    assert blocks(st["counters"]) == FRESH
    # /metrics counts every worker's refusals (the others report once a second)
    deadline = time.monotonic() + 10
    while True:
        seen = sum(int(n) for n in re.findall(
            r'shieldwall_guard_events_total\{kind="block(?::accept)?"\} (\d+)',
            httpx.get(admin + "/metrics").text))
        if seen == FRESH:
            break
        assert time.monotonic() < deadline, f"/metrics says {seen} blocks"
        time.sleep(0.2)

    # each original worker in turn: the other one (1 or 0) hands it the state
    for victim in workers_of(proc.pid):
        st = replace_worker(proc, victim, admin)
        assert [v["bans"] for v in st["workers"]["views"]] == [1, 1], st["workers"]
        fresh = [v for v in st["workers"]["views"] if not v["counters"]]
        assert len(fresh) == 1, "the replacement starts with no counters"
        refused = fresh_gets(url)
        assert all(r.status_code in REFUSED for r in refused), [r.status_code for r in refused]
        assert len(Shop.hits) == hits
        st = status(admin)
        assert all(blocks(v["counters"]) > 0 for v in st["workers"]["views"]), \
            "the replacement did not refuse any of the fresh connections"

    done = cli(admin, "unban", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert all(r.status_code == 200 for r in fresh_gets(url))


def test_operator_mode_reaches_every_worker_and_survives_a_restart(
        procs: Any, shop: str, tmp_path: Path) -> None:
    proc, url, admin = serve_workers(procs, shop, tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = httpx.post(admin + "/api/mode", json={"mode": "under-attack"}, headers=headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["mode"] == "under_attack" and body["pinned"] is True
    assert body["workers"] == {"total": 2, "applied": 2, "failed": []}
    challenged = fresh_gets(url)
    assert [r.status_code for r in challenged] == [403] * FRESH
    assert all(CHALLENGE in r.text for r in challenged)
    assert Shop.hits == []
    st = status(admin)
    assert all(v["counters"].get("challenge", 0) > 0 for v in st["workers"]["views"])

    st = replace_worker(proc, workers_of(proc.pid)[-1], admin)
    assert [(v["mode"], v["pinned"]) for v in st["workers"]["views"]] == \
        [("under_attack", True)] * 2
    assert all(CHALLENGE in r.text for r in fresh_gets(url))

    assert cli(admin, "mode", "auto").returncode == 0
    st = status(admin)
    assert [(v["mode"], v["pinned"]) for v in st["workers"]["views"]] == [("normal", False)] * 2
    assert all(r.status_code == 200 for r in fresh_gets(url))


def test_a_session_signed_by_one_worker_holds_on_the_others(
        procs: Any, shop: str, tmp_path: Path) -> None:
    _proc, url, _admin = serve_workers(procs, shop, tmp_path)
    first = fresh_gets(url, 1)[0]
    sessions = [c for c in first.set_cookies if c.startswith("sw_s=")]
    assert first.status_code == 200 and len(sessions) == 1, first.set_cookies
    cookie = sessions[0].split(";", 1)[0]
    again = fresh_gets(url, cookie=cookie)
    assert [r.status_code for r in again] == [200] * FRESH
    reissued = [r.set_cookies for r in again if r.set_cookies]
    assert reissued == [], "a worker did not recognise its peer's signature"


def test_a_dead_worker_is_reported_and_does_not_hang_the_operator(
        procs: Any, shop: str, tmp_path: Path) -> None:
    proc, _url, admin = serve_workers(procs, shop, tmp_path)
    views = status(admin)["workers"]["views"]
    assert [v["worker"] for v in views] == [0, 1]
    assert sorted(v["pid"] for v in views) == sorted(workers_of(proc.pid))
    # stop (not kill) worker 1: its socket accepts nothing, the supervisor sees no death
    stopped = views[1]["pid"]
    os.kill(stopped, signal.SIGSTOP)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        t0 = time.monotonic()
        answer = httpx.post(admin + "/api/ban", json={"value": "192.0.2.7"}, headers=headers,
                            timeout=20)
        took = time.monotonic() - t0
        st = status(admin)
        t0 = time.monotonic()
        verdict = httpx.get(admin + "/api/verdict", headers=headers, timeout=20).json()
        verdict_took = time.monotonic() - t0
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert answer.status_code == 200 and answer.json()["banned"] == "192.0.2.7/32"
    assert answer.json()["workers"] == {
        "total": 2, "applied": 1,
        "failed": [{"worker": 1, "status": 0, "error": "no answer in time"}]}
    assert took < 2 * PEER_TIMEOUT + 1
    assert st["workers"]["answered"] == 1 and st["workers"]["agree"] is False
    assert st["workers"]["failed"][0]["worker"] == 1
    assert verdict["workers"]["answered"] == 1 and verdict["workers"]["failed"][0]["worker"] == 1
    assert verdict_took < 2 * READ_TIMEOUT + 0.5, "views are gathered with a short timeout"


def test_with_redis_the_fan_out_and_the_sync_agree(
        procs: Any, shop: str, tmp_path: Path) -> None:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(server):
        pytest.skip("redis-server not installed (make installs it)")
    sock = tmp_path / "redis.sock"
    redis = procs.start([server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm",
                         "700", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert redis.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    cfg = tmp_path / "shield.toml"
    cfg.write_text(f'[guard.redis]\nurl = "unix://{sock}"\n')
    _proc, url, admin = serve_workers(procs, shop, tmp_path, "--config", str(cfg))
    assert cli(admin, "ban", "127.0.0.1").returncode == 0
    assert all(r.status_code in REFUSED for r in fresh_gets(url))
    assert cli(admin, "unban", "127.0.0.1").returncode == 0
    time.sleep(0.3)  # several sync rounds: nothing brings the ban back
    assert [r.status_code for r in fresh_gets(url)] == [200] * FRESH
    assert cli(admin, "mode", "under-attack").returncode == 0
    assert all(CHALLENGE in r.text for r in fresh_gets(url))
    assert cli(admin, "mode", "auto").returncode == 0
    time.sleep(0.3)
    st = status(admin)
    assert st["store"]["kind"] == "redis" and st["store"]["healthy"] is True
    assert [(v["mode"], v["pinned"], v["bans"]) for v in st["workers"]["views"]] == \
        [("normal", False, 0)] * 2
    assert all(r.status_code == 200 for r in fresh_gets(url))


def _settings() -> GuardSettings:
    return GuardSettings()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_peer_verdict_counts_for_30_seconds_and_the_most_severe_wins() -> None:
    clock = FakeClock()
    rt = GuardRuntime.from_settings(_settings(), clock=clock)
    rt.peer_verdict("a", Mode.ELEVATED, clock.now)
    rt.peer_verdict("b", Mode.UNDER_ATTACK, clock.now)
    assert rt.state.mode is Mode.UNDER_ATTACK
    rt.peer_verdict("b", Mode.NORMAL, clock.now)  # b's detector calmed down
    assert rt.state.mode is Mode.ELEVATED
    clock.now += PEER_FRESH + 1  # a went silent (died): its verdict decays
    rt._apply_peer_verdicts()
    assert rt.state.mode is Mode.NORMAL
    rt.peer_verdict("a", Mode.UNDER_ATTACK, clock.now)
    rt.set_mode(Mode.NORMAL, "operator")
    assert rt.state.mode is Mode.NORMAL, "a pin outranks every detector"
    rt.set_mode(None, "operator")
    assert rt.state.mode is Mode.UNDER_ATTACK


def test_a_report_carries_the_verdict_when_it_changes_and_every_new_suspect() -> None:
    clock = FakeClock()
    a = GuardRuntime.from_settings(_settings(), clock=clock)
    b = GuardRuntime.from_settings(_settings(), clock=clock)
    a.mark_suspect("203.0.113.5", 0.8, 300)  # before any peer asked: not kept for them
    first = a.peer_report()
    assert first is not None and json.loads(first[1]) == {
        "node": a.node, "mode": "normal", "at": clock.now}
    assert a.peer_report() is None, "nothing new"
    a.mark_suspect("203.0.113.6", 0.75, 300)
    a.set_mode(Mode.ELEVATED, "detector")
    a.gate.counts["allow"] = 4  # as if its gate had let four requests in
    path, body = a.peer_report() or ("", b"")
    sent = json.loads(body)
    assert sent["mode"] == "elevated" and sent["suspects"] == [["203.0.113.6", 0.75,
                                                                clock.now + 300]]
    assert b.peer_suspects(sent["suspects"]) == 1
    b.peer_verdict(sent["node"], Mode(sent["mode"]), sent["at"])
    assert b.state.mode is Mode.ELEVATED and "203.0.113.6" in b.state.suspects
    clock.now += 5
    path, body = a.peer_report() or ("", b"")
    assert path == "/peer/guard/report" and json.loads(body)["at"] == clock.now, \
        "an unchanged verdict is repeated every 5 s so it stays fresh"
    assert b.peer_suspects([["x", "not a score", 1], ["203.0.113.7", 0.5, clock.now - 1]]) == 0
    assert sent["counters"] == {"allow": 4}
    b.gate.counts["block"] = 2
    b.peer_counters(a.node, {"block": 3, "allow": 1, "bogus": "x"})
    assert b.shield_counters() == {"allow": 1, "block": 5}


def test_a_restored_snapshot_carries_bans_allows_pin_and_verdicts() -> None:
    clock = FakeClock()
    old = GuardRuntime.from_settings(_settings(), clock=clock)
    old.ban("203.0.113.0/24", 600, "flood")
    old.allow("192.0.2.10", 600, "probe")
    old.set_mode(Mode.ELEVATED, "operator")
    old.set_mode(Mode.UNDER_ATTACK, "detector")
    old.mark_suspect("198.51.100.9", 0.9, 300)
    new = GuardRuntime.from_settings(_settings(), clock=clock)
    new.restore(json.loads(json.dumps(old.snapshot())))
    assert [b["value"] for b in new.bans()] == ["203.0.113.0/24"]
    assert [a["value"] for a in new.allows()] == ["192.0.2.10/32"]
    assert new.state.pinned is Mode.ELEVATED
    new.set_mode(None, "operator")
    assert new.state.mode is Mode.UNDER_ATTACK, "the old worker's detector verdict came along"
    assert new.state.suspects == {"198.51.100.9": (0.9, clock.now + 300)}
    new.restore({"bans": [["not an address", None, "", ""]], "pinned": "sideways"})
    assert [b["value"] for b in new.bans()] == ["203.0.113.0/24"]


def _flood_replay(det: DetectRuntime, clock: FakeClock) -> Iterator[None]:
    """Feed the real detector a synthetic shop (60 s quiet, a 20 s flood, 40 s
    quiet) one second per step, as the proxy's sink and tick would."""
    sc = make_scenario(22, ["flood"], family="heldout", warmup=60, phase_len=(20, 20),
                       gap=(40, 40))
    events = generate(sc)
    clock.now = sc.t0
    i, t = 0, math.floor(events[0].time)
    while t < sc.t0 + sc.duration:
        t += 1.0
        while i < len(events) and events[i].time + events[i].request_time < t:
            det.sink(events[i])
            i += 1
        clock.now = t
        det.tick()
        yield


async def test_one_workers_detector_verdict_reaches_the_other_over_its_socket(
        tmp_path: Path) -> None:
    """Two real workers in this loop, linked by their private unix sockets;
    worker 0's real detector sees a flood, worker 1's sees nothing. Worker 1
    holds the admin listener here, so its /api/verdict must fetch worker 0's."""
    config = build_config({"listen": "127.0.0.1:0", "access_log": "off",
                           "admin": {"listen": "127.0.0.1:0", "token": TOKEN},
                           "backends": [{"url": "http://127.0.0.1:9"}],
                           "upstream": {"health": {"enabled": False}},
                           "detect": {"enabled": False}}, "test")
    clock = FakeClock()
    guards, dets, workers, socks = [], [], [], []
    try:
        for i in range(2):
            g = GuardRuntime.from_settings(config.guard)
            det = DetectRuntime.from_settings(DetectSettings(), clock=clock,
                                              on_mode=_mode_setter(g), on_suspect=g.mark_suspect)
            w = Wiring(gate=g.gate, admission=g.admission,
                       routes=g.admin_routes + det.admin_routes,
                       services=[Service("guard", g.start, g.stop)],
                       peers=[PeerHooks(g.peer_routes, "/peer/guard/snapshot", g.restore,
                                        g.peer_report)])
            worker = Worker(config, w, i, None, tmp_path, 2)
            sock = listen_socket("127.0.0.1", 0, reuse_port=False)
            admin = listen_socket("127.0.0.1", 0, reuse_port=False) if i == 1 else None
            socks += [sock, admin] if admin else [sock]
            await worker.start(sock, admin)
            guards.append(g)
            dets.append(det)
            workers.append(worker)
        assert socket_path(tmp_path, 0).exists() and socket_path(tmp_path, 1).exists()
        assert oct(socket_path(tmp_path, 1).stat().st_mode & 0o777) == "0o600"
        admin_url = f"http://127.0.0.1:{socks[-1].getsockname()[1]}"

        replay = _flood_replay(dets[0], clock)
        for _ in replay:
            if guards[0].state.own_detector_mode is Mode.UNDER_ATTACK:
                break
        assert guards[0].state.mode is Mode.UNDER_ATTACK, "the detector never saw the flood"
        await _until(lambda: guards[1].state.mode is Mode.UNDER_ATTACK)
        assert guards[1].state.own_detector_mode is Mode.NORMAL, "worker 1 saw no traffic"
        # Suspects need pages in two seconds of the 10 s view (a new visitor's
        # first second proves nothing), so they may come a second or two
        # after the mode switch.
        for _ in zip(range(5), replay, strict=False):
            if guards[0].state.suspects:
                break
        named = set(guards[0].state.suspects)
        assert named, "the detector named no attacker"
        await _until(lambda: named <= set(guards[1].state.suspects))
        async with httpx.AsyncClient() as client:
            verdict = (await client.get(admin_url + "/api/verdict",
                                        headers={"Authorization": f"Bearer {TOKEN}"})).json()
        assert verdict["verdict"] == "ddos" and verdict["mode"] == "under_attack"
        assert verdict["workers"]["chosen"] == 0 and verdict["workers"]["answered"] == 2
        assert [v["verdict"] for v in verdict["workers"]["views"]] == ["ddos", "normal"]

        guards[1].set_mode(Mode.NORMAL, "operator")
        await asyncio.sleep(1.5)
        assert guards[1].state.mode is Mode.NORMAL, "the detector does not override a pin"
        guards[1].set_mode(None, "operator")
        assert guards[1].state.mode is Mode.UNDER_ATTACK

        for _ in replay:  # the flood ends; the detector steps down, with hysteresis
            pass
        assert guards[0].state.own_detector_mode is Mode.NORMAL
        await _until(lambda: guards[1].state.mode is Mode.NORMAL)

        peers = Peers(tmp_path, 1, 2)
        snap = await peers.pull("/peer/guard/snapshot")
        assert snap is not None and snap["verdicts"][guards[0].node][0] == "normal"
    finally:
        for worker in workers:
            await worker.stop()
        for sock in socks:
            sock.close()


async def _until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
