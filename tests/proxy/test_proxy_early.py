"""Refusal decided from the first bytes (issue 10's cheap refusal).

While an address is being refused (or the mode is not normal), the proxy asks
the guard about its next request from the request line, the address and the
Cookie header (``framing.quick_head``), before the framer parses the head.
What must hold: the fields are the ones the framer would give, so the
decision is the same; a request the early path answers is one the framer
takes as one whole valid request (a malformed one still gets the framer's
own 4xx); the connection stays open only when nothing after the head could
be read as a body; the guard decides once per request either way.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from proxy_backends import Backend, Client, send_raw, shield_config, status_of
from test_proxy_framing import BAD, GOOD

from shieldwall.config import build_config
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings
from shieldwall.http.framing import (
    END,
    HEAD,
    FramingLimits,
    RequestFramer,
    RequestHead,
    quick_head,
    request_line,
    well_formed,
)
from shieldwall.proxy.accesslog import AccessLog
from shieldwall.proxy.wiring import Wiring
from shieldwall.proxy.worker import Shield, run_shield
from shieldwall.rowfeed import RowFeed

LIMITS = FramingLimits()

PLAIN = [
    b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n",
    b"GET /a?x=1&y=%20 HTTP/1.1\r\nHost: shop:8080\r\nUser-Agent: Mozilla/5.0 (X11)\r\n"
    b"Referer: http://shop/b\r\nCookie: sw_session=abc.def; theme=dark\r\n\r\n",
    b"GET /c HTTP/1.1\r\nHOST: shop\r\nCOOKIE:   a=1 \r\nuser-agent:\tua\t\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive\r\n\r\n",
    b"GET /k HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
    b"GET /k HTTP/1.0\r\n\r\n",
    b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n",
    b"DELETE /x? HTTP/1.1\r\nHost: shop\r\nCookie:\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /q?a=b?c HTTP/1.1\r\nHost: shop\r\nAccept: */*\r\nX-Cookie: no\r\n\r\n",
    GOOD,  # two Cookie headers: the framer joins them, so not the early path's
]


@pytest.mark.parametrize("data", PLAIN + [d for _, d, _ in BAD])
def test_what_the_early_path_reads_is_what_the_framer_gives(data: bytes) -> None:
    q = quick_head(data, LIMITS)
    events = RequestFramer(LIMITS).feed(data)
    kinds = [k for k, _ in events]
    if q is None:
        return  # the framer's, as ever
    form = well_formed(data)
    if form:
        # answered early only if the framer takes it as one whole valid request
        assert kinds == [HEAD, END], (data, events)
        head = events[0][1]
        assert isinstance(head, RequestHead)
        assert head.keep_alive == (form == 2) and not head.has_body
    method, request, path, query, version, cookie, agent, referer = q
    if kinds and kinds[0] == HEAD:
        head = events[0][1]
        assert isinstance(head, RequestHead)
        assert (head.method, head.path, head.query, head.version) == \
            (method, path, query, version)
        assert request == f"{head.method} {head.target.decode('latin-1')} HTTP/{head.version}"
        assert (head.cookie, head.user_agent, head.referer) == (cookie, agent, referer)


def test_the_plain_shapes_are_taken_and_the_others_left_to_the_framer() -> None:
    taken = [d for d in PLAIN if quick_head(d, LIMITS) is not None]
    assert GOOD not in taken
    assert len(taken) == len(PLAIN) - 1
    forms = [well_formed(d) for d in PLAIN]
    assert forms[0] == forms[3] == forms[6] == 2  # kept alive after a refusal
    assert forms[4] == forms[5] == 1  # Connection: close, HTTP/1.0: closed after it
    assert forms[8] == forms[9] == 0  # a body announced: the framer's
    # pipelined requests and anything but one whole head: the framer's
    assert quick_head(PLAIN[0] + PLAIN[0], LIMITS) is None
    assert quick_head(PLAIN[0][:-2], LIMITS) is None
    assert quick_head(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", LIMITS) is None
    assert quick_head(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", LIMITS) is None
    assert quick_head(b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", LIMITS) is None
    assert quick_head(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", LIMITS) is None
    assert quick_head(b"GET / RTSP/1.0\r\nHost: a\r\n\r\n", LIMITS) is None


SETTINGS = {
    "allow_crawlers": False,
    "limits": {
        "routes": [{"name": "limited", "match": ["/limited*"], "rate": 0.001, "burst": 1}],
        "default_route": {"name": "page", "rate": 1e6, "burst": 1e6},
        "prefix_factor": {"24": 1e6, "64": 1e6, "48": 1e6},
    },
}


Rig = tuple[Shield, Backend, GuardRuntime]


@asynccontextmanager
async def guarded_shield(log: Path | None = None, feed: RowFeed | None = None
                         ) -> AsyncIterator[Rig]:
    """A backend, the guard of SETTINGS and a shield in front (its access log
    at ``log``, its rows to ``feed`` when given), all stopped on the way out."""
    backend = await Backend().start()
    try:
        rt = GuardRuntime.from_settings(GuardSettings.model_validate(SETTINGS))
        over = {} if log is None else {"access_log": str(log)}
        config = build_config(shield_config([backend.url], **over))
        async with run_shield(config, Wiring(gate=rt.gate, admission=rt.admission,
                                             feed=feed)) as shield:
            yield shield, backend, rt
    finally:
        await backend.stop()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with guarded_shield() as r:
        yield r


def _req(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: shop\r\nUser-Agent: flood\r\n{extra}\r\n".encode()


async def test_a_refused_address_is_answered_from_the_first_bytes_on_a_kept_connection(
        rig: Rig) -> None:
    shield, backend, rt = rig
    metrics = shield.worker.metrics
    c = await Client.open(shield.port)
    try:
        statuses = []
        for _ in range(5):
            await c.send(_req("/limited"))
            status, headers, _ = await c.response()
            statuses.append(status)
            assert headers.get("connection") != "close"
        assert statuses == [200, 429, 429, 429, 429]
        # the first 429 went through the framer; the next three were early
        assert metrics.refused_early == 3
        assert rt.gate.counts["limit"] == 4  # decided once per request
        allowed = rt.gate.counts["allow"]
        # the same address on a route it may use: decided early, allowed once, forwarded
        await c.send(_req("/ok"))
        status, _, body = await c.response()
        assert (status, body) == (200, b"hello")
        assert rt.gate.counts["allow"] == allowed + 1
        # HEAD: the refusal without its body
        await c.send(b"HEAD /limited HTTP/1.1\r\nHost: shop\r\n\r\n")
        status, headers, _ = await c.response(head_only=True)
        assert status == 429 and int(headers["content-length"]) > 0
        await c.send(_req("/limited"))
        status, _, _ = await c.response()
        assert status == 429
    finally:
        c.writer.close()
    assert [s.target for s in backend.seen] == ["/limited", "/ok"]
    assert metrics.refused_early == 5


async def test_a_refusal_on_one_connection_moves_the_addresss_other_connections_to_the_early_path(
        rig: Rig) -> None:
    """A connection asks the guard's early window again only when the guard
    put some address in it (refusing_gen): a refusal on another connection
    of the same address must still reach this one at its next request."""
    shield, _backend, rt = rig
    metrics = shield.worker.metrics
    a = await Client.open(shield.port)
    b = await Client.open(shield.port)
    try:
        for _ in range(3):  # a is a shopper's connection: parsed and forwarded
            await a.send(_req("/ok"))
            assert (await a.response())[0] == 200
        assert metrics.refused_early == 0
        for expect in (200, 429):  # b spends the address's one /limited token
            await b.send(_req("/limited"))
            assert (await b.response())[0] == expect
        await a.send(_req("/limited"))
        assert (await a.response())[0] == 429
        assert metrics.refused_early == 1  # a's request was decided from its first bytes
        assert rt.gate.counts["limit"] == 2
    finally:
        a.writer.close()
        b.writer.close()


async def test_an_early_refusal_closes_when_the_request_says_so_or_a_body_may_follow(
        rig: Rig) -> None:
    shield, backend, _rt = rig
    for _ in range(2):  # allowed (burst 1), then refused: the address is being refused
        await send_raw(shield.port, _req("/limited", "Connection: close\r\n"))
    out = await send_raw(shield.port, _req("/limited", "Connection: close\r\n"))
    assert status_of(out) == 429 and out.count(b"HTTP/1.1") == 1
    assert shield.worker.metrics.refused_early == 1
    # A body announced after a refusal: the head goes to the framer, which
    # answers it and closes; what follows is never read as a request.
    smuggled = b"GET /admin HTTP/1.1\r\nHost: shop\r\n\r\n"
    post = (b"POST /limited HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n" % len(smuggled))
    out = await send_raw(shield.port, [post, smuggled], pause=0.05)
    assert status_of(out) == 429 and out.count(b"HTTP/1.1") == 1
    assert [s.target for s in backend.seen] == ["/limited"]


@pytest.mark.parametrize(("name", "data", "status"), BAD, ids=[b[0] for b in BAD])
async def test_a_malformed_request_from_a_refused_address_gets_the_framers_status(
        rig: Rig, name: str, data: bytes, status: int) -> None:
    shield, backend, rt = rig
    await send_raw(shield.port, _req("/limited", "Connection: close\r\n"))
    await send_raw(shield.port, _req("/limited", "Connection: close\r\n"))
    assert rt.gate.early_wanted("127.0.0.1")
    limits = rt.gate.counts.get("limit", 0)
    out = await send_raw(shield.port, data)
    assert status_of(out) == status, (name, out[:200])
    assert b"\r\nConnection: close" in out.split(b"\r\n\r\n")[0]
    assert [s.target for s in backend.seen] == ["/limited"]
    assert rt.gate.counts.get("limit", 0) == limits  # answered by the framer: no refusal


async def test_under_attack_a_new_clients_first_request_is_challenged_from_its_first_bytes(
        rig: Rig) -> None:
    shield, backend, rt = rig
    from shieldwall.guard.decision import Mode

    rt.set_mode(Mode.UNDER_ATTACK, "test")
    out = await send_raw(shield.port, _req("/p", "Connection: close\r\n"))
    assert status_of(out) == 403 and b"shieldwall-challenge" in out
    assert shield.worker.metrics.refused_early == 1
    assert backend.seen == []


def test_an_answered_refusal_is_logged_as_the_line_write_makes(tmp_path: Path) -> None:
    """The early path logs a refusal from parts made once (write_answered):
    the line is the one ``write`` makes from the same values, escaping too."""
    full, parts = AccessLog(str(tmp_path / "full.log")), AccessLog(str(tmp_path / "parts.log"))
    cases = [("GET /limited?x=1 HTTP/1.1", "", "bench", True, False),
             ('GET /"q"\\ HTTP/1.0', "http://r/\x7f", "Mo\tz\u00e9", False, True)]
    for request, referer, agent, session, verified in cases:
        method, _, rest = request.partition(" ")
        target, version = rest[:-9], rest[-3:]
        for rt in (0.0, 0.0001, 0.003, 0.2554, 1.5):
            full.write("198.51.100.7", 1_700_000_000.25, method, target, version, 429, 176,
                       referer, agent, rt, "", -1.0, 0, "shield", "limit", "unknown", session,
                       verified)
            parts.write_answered("198.51.100.7", 1_700_000_000.25, request, 429, 176, referer,
                                 agent, rt, parts.answered_tail("shield", "limit", "unknown",
                                                                session, verified),
                                 plain=False)
    full.close()
    parts.close()
    text = (tmp_path / "parts.log").read_text()
    assert text == (tmp_path / "full.log").read_text()
    assert text.count("\n") == 10 and 'd=limit' in text and "rt=1.500 " in text


async def test_every_early_refusal_is_in_the_access_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with guarded_shield(log) as (shield, _backend, _rt):
        c = await Client.open(shield.port)
        try:
            for _ in range(6):
                await c.send(_req("/limited?n=1"))
                await c.response()
        finally:
            c.writer.close()
        assert shield.worker.metrics.refused_early == 4
    lines = log.read_text().splitlines()
    assert len(lines) == 6
    refused = [ln for ln in lines if '" 429 ' in ln]
    assert len(refused) == 5
    assert all('"GET /limited?n=1 HTTP/1.1" 429 ' in ln and '"-" "flood" rt=' in ln
               and " o=shield d=limit c=unknown " in ln for ln in refused)


def test_a_new_request_line_over_known_header_lines_reads_as_quick_head_does() -> None:
    """request_line (the early path's reading of a head whose header lines a
    connection sent before) gives what quick_head and llhttp give the whole
    head, or None: for every plain head, with targets of any bytes."""
    rng = random.Random(5)
    alphabet = bytes(range(33, 127)) + b" \x00\t\x80\xe9#"
    checked = 0
    for data in PLAIN:
        q = quick_head(data, LIMITS)
        if q is None:
            continue
        method, request, _path, _query, version, cookie, agent, referer = q
        tail = data[len(request):]
        form = well_formed(data)
        for _ in range(300):
            target = b"/" + bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            variant = f"{method} ".encode() + target + f" HTTP/{version}".encode() + tail
            got = request_line(variant, len(variant) - len(tail), method + " ",
                               " HTTP/" + version, LIMITS.max_request_line)
            if got is None:
                continue
            checked += 1
            again = quick_head(variant, LIMITS)
            assert again is not None, variant
            assert got == (again[1], again[2], again[3]), variant
            assert again[5:] == (cookie, agent, referer)
            assert well_formed(variant) == form, variant
            head = RequestFramer(LIMITS).feed(variant)[0][1]
            assert isinstance(head, RequestHead) and (head.path, head.query) == got[1:]
    assert checked > 300
    # not the same method or version, or not a plain target: None
    tail = b"\r\nHost: shop\r\n\r\n"
    for line in (b"HEAD /a HTTP/1.1", b"GET /a HTTP/1.0", b"GET /a\"b HTTP/1.1", b"GET a HTTP/1.1",
                 b"GET /a b HTTP/1.1", b"GET /a\r\nX: y HTTP/1.1", b"GET  HTTP/1.1"):
        assert request_line(line + tail, len(line), "GET ", " HTTP/1.1", 8192) is None, line
    assert request_line(b"GET /" + b"a" * 20 + b" HTTP/1.1" + tail, 30, "GET ", " HTTP/1.1",
                        20) is None


async def test_a_randomized_flood_on_one_connection_is_refused_from_its_request_lines(
        rig: Rig) -> None:
    shield, backend, rt = rig
    metrics = shield.worker.metrics
    c = await Client.open(shield.port)
    try:
        statuses = []
        for i in range(6):
            await c.send(_req(f"/limited?q={i}"))
            statuses.append((await c.response())[0])
        # a request line llhttp would refuse, over the same header lines: the framer's 400
        await c.send(_req("/limited?q=\x01"))
        status = (await c.response())[0]
    finally:
        c.writer.close()
    assert statuses == [200, 429, 429, 429, 429, 429]
    # (the malformed one was decided on too, before llhttp refused it, and its
    # count taken back: it was answered 400, not refused)
    assert metrics.refused_early == 4 and rt.gate.counts["limit"] == 5
    assert status == 400
    assert [s.target for s in backend.seen] == ["/limited?q=0"]


async def test_early_refusals_log_what_needs_escaping_escaped(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    head = "HTTP/1.1\r\nHost: shop\r\nUser-Agent: fl\"ood\r\nReferer: /r\\x\r\n\r\n"
    async with guarded_shield(log) as (shield, _backend, _rt):
        c = await Client.open(shield.port)
        try:
            for target in ("/limited", "/limited", "/limited?a=1", "/limited?a=1",
                           "/limited?b=2"):
                await c.send(f"GET {target} {head}".encode())
                await c.response()
        finally:
            c.writer.close()
        assert shield.worker.metrics.refused_early == 3
    lines = log.read_text().splitlines()
    assert len(lines) == 5
    assert all('"/r\\x5Cx" "fl\\x22ood"' in ln for ln in lines), lines
    assert [ln.split('"')[1] for ln in lines] == [
        "GET /limited HTTP/1.1", "GET /limited HTTP/1.1", "GET /limited?a=1 HTTP/1.1",
        "GET /limited?a=1 HTTP/1.1", "GET /limited?b=2 HTTP/1.1"]


async def test_early_refusals_count_log_and_feed_what_the_first_one_did(tmp_path: Path) -> None:
    """The early path's refusals after a connection's first (_log_refused:
    parts kept on the connection, a native metrics count) leave the access-log
    line, the metrics and the feed's row that the full path (_log_row) leaves
    for the same request: only the time and the request line vary."""
    log = tmp_path / "access.log"
    feed = RowFeed()
    targets = ["/limited", "/limited", "/limited", "/limited?q=1", "/limited?q=2", "/limited",
               "/limited?q=2"]
    async with guarded_shield(log, feed) as (shield, _backend, _rt):
        c = await Client.open(shield.port)
        try:
            for target in targets:
                await c.send(_req(target, "Referer: http://shop/\r\n"))
                await c.response()
        finally:
            c.writer.close()
        metrics = shield.worker.metrics
        assert metrics.refused_early == len(targets) - 2
        snap = metrics.snapshot()
    assert [429, "limit", "shield", len(targets) - 1] in snap["requests"]
    assert snap["latency_counts"][0] >= len(targets) - 1
    lines = log.read_text().splitlines()
    assert [ln.split('"')[1] for ln in lines] == [f"GET {t} HTTP/1.1" for t in targets]

    def unstamped(line: str) -> str:
        """The line without its times (the stamp, rt): the framer's refusal
        is timed from its callback's start and may take a few ms on a loaded
        machine; the early path's are answered in the callback that read them."""
        head, _, rest = line.partition(" [")
        return re.sub(r" rt=[0-9.]+ ", " rt= ", head + " " + rest.partition("] ")[2].partition('" ')[2])

    first = unstamped(lines[1])  # the first refusal: the framer's, _log_row's line
    assert '429 ' in first and ' "http://shop/" "flood" rt= up=- ' in first
    assert all(unstamped(ln) == first for ln in lines[2:])
    assert all(" rt=0.000 " in ln for ln in lines[3:])
    rows = [(*req, *rest) for req, *rest in feed.rows]  # (the detector's part, the console's)
    assert len(rows) == len(targets)
    assert [(r[2], r[3]) for r in rows] == [t.partition("?")[::2] for t in targets]
    # (rt: 0 for those logged from the memo, answered in the callback that
    # read them; the log says 0.000 for all, as the offline feed reads it)
    assert all(r[4:6] + r[7:] == rows[1][4:6] + rows[1][7:] for r in rows[2:])
    assert all(r[6] == 0.0 for r in rows[3:])  # (the 2nd: the connection's memo made)


async def test_a_ban_or_an_allow_acts_on_a_flooding_connections_next_request(
        tmp_path: Path) -> None:
    """A connection refused from its memo (same bytes, or new request lines)
    still has every request decided by the guard: a ban closes it at once, an
    allow makes its next request a verified client's."""
    log = tmp_path / "access.log"
    async with guarded_shield(log) as (shield, _backend, rt):
        c = await Client.open(shield.port)
        try:
            for i in range(4):
                await c.send(_req(f"/limited?q={i % 2}"))
                assert (await c.response())[0] == (200 if i == 0 else 429)
            rt.allow("127.0.0.1", ttl=60)
            await c.send(_req("/limited?q=1"))
            await c.response()
            rt.unallow("127.0.0.1")
            await c.send(_req("/limited?q=1"))
            assert (await c.response())[0] == 429
            rt.ban("127.0.0.1", ttl=60)
            await c.send(_req("/limited?q=1"))
            status, headers, _ = await c.response()
            assert status == 403 and headers.get("connection") == "close"
        finally:
            c.writer.close()
    lines = log.read_text().splitlines()
    assert [" c=verified " in ln for ln in lines] == [False] * 4 + [True, False, False]
    assert " d=block " in lines[-1]
