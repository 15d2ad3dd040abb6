"""The data path end to end over loopback: keep-alive on both sides, bodies
streamed both ways, forwarded-for handling, the gate and admission
contracts, the access log line and the request events."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from proxy_backends import Backend, Client, Reply, send_raw, shield_config

from shieldwall.config import build_config
from shieldwall.detect.events import Outcome, RequestEvent
from shieldwall.guard.decision import (
    Action,
    ClientClass,
    Decision,
    RequestFacts,
)
from shieldwall.proxy.wiring import Wiring
from shieldwall.proxy.worker import Shield, run_shield


class RecordingGate:
    """Blocks /blocked, shadow-blocks /shadow, marks every response."""

    def __init__(self) -> None:
        self.facts: list[RequestFacts] = []
        self.observed: list[tuple[str, int]] = []

    def decide(self, facts: RequestFacts) -> Decision:
        self.facts.append(facts)
        if facts.path == "/blocked":
            return Decision(Action.BLOCK, ClientClass.SUSPECT, reason="test",
                            response=b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n",
                            close=True)
        if facts.path == "/limited":
            return Decision(Action.LIMIT, ClientClass.UNKNOWN, retry_after=1,
                            response=b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n")
        if facts.path == "/shadow":
            return Decision(Action.BLOCK, ClientClass.SUSPECT, shadow=True,
                            response=b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        return Decision(Action.ALLOW, ClientClass.CUSTOMER,
                        add_response_headers=((b"X-Decided", b"allow"),))

    def observe_response(self, facts: RequestFacts, decision: Decision, status: int,
                         headers: list[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
        self.observed.append((facts.path, status))
        return ((b"Set-Cookie", b"sw_s=abc; HttpOnly"),)


class ShedAll:
    def __init__(self) -> None:
        self.acquired: list[tuple[str, ClientClass]] = []
        self.released: list[tuple[str, bool]] = []

    def try_acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> bool:
        return False  # always decide in acquire (the awaited path)

    async def acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> float | None:
        self.acquired.append((backend, cls))
        return 7.0 if cls is ClientClass.SUSPECT else None

    def release(self, backend: str, latency: float, ok: bool) -> None:
        self.released.append((backend, ok))


@pytest.fixture
async def shield(backend: Backend) -> AsyncIterator[Shield]:
    async with run_shield(build_config(shield_config([backend.url]))) as s:
        yield s


async def test_keep_alive_on_both_sides(shield: Shield, backend: Backend) -> None:
    c = await Client.open(shield.port)
    for i in range(5):
        await c.send(b"GET /k%d HTTP/1.1\r\nHost: shop\r\n\r\n" % i)
        status, _, body = await c.response()
        assert (status, body) == (200, b"hello")
    c.close()
    assert [s.target for s in backend.seen] == [f"/k{i}" for i in range(5)]
    assert backend.connections == 1


async def test_each_request_goes_up_with_its_own_fields_on_one_connection(
        shield: Shield, backend: Backend) -> None:
    """The connection remembers the last bodiless request's forwarded fields
    (the same ones again: only the request line is new); any change of the
    fields, a body or a method makes the head anew."""
    c = await Client.open(shield.port)
    reqs = [
        b"GET /a HTTP/1.1\r\nHost: shop\r\nUser-Agent: t\r\n\r\n",
        b"GET /b?q=1 HTTP/1.1\r\nHost: shop\r\nUser-Agent: t\r\n\r\n",
        b"HEAD /c HTTP/1.1\r\nHost: shop\r\nUser-Agent: t\r\n\r\n",
        b"GET /d HTTP/1.1\r\nHost: shop\r\nUser-Agent: t\r\nCookie: k=v\r\n\r\n",
        b"POST /e HTTP/1.1\r\nHost: shop\r\nUser-Agent: t\r\nCookie: k=v\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        b"GET /f HTTP/1.1\r\nHost: shop\r\nUser-Agent: t\r\nCookie: k=v\r\n\r\n",
        b"GET /g HTTP/1.1\r\nHost: shop\r\nUser-Agent: u\r\nCookie: k=v\r\n\r\n",
    ]
    for r in reqs:
        await c.send(r)
        status, _, _ = await c.response(head_only=r.startswith(b"HEAD"))
        assert status == 200
    c.close()
    assert [(s.method, s.target) for s in backend.seen] == [
        ("GET", "/a"), ("GET", "/b?q=1"), ("HEAD", "/c"), ("GET", "/d"), ("POST", "/e"),
        ("GET", "/f"), ("GET", "/g")]
    for seen, raw in zip(backend.seen, reqs, strict=True):
        want = [ln.split(b": ", 1) for ln in raw.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
        got = [(n.lower(), v) for n, v in seen.headers
               if n.lower() not in ("x-forwarded-for", "x-forwarded-proto")]
        assert got == [(n.decode().lower(), v.decode()) for n, v in want]
        assert seen.header("x-forwarded-for") == "127.0.0.1"
    assert backend.seen[4].body == b"abc" and backend.seen[5].body == b""


async def test_each_response_on_one_connection_comes_down_with_its_own_head(
        shield: Shield, backend: Backend) -> None:
    """A connection keeps the last response head of the plain shape it sent
    (upstream_head): 150 random responses on one client connection (statuses,
    lengths, fields, chunked ones, HEAD requests) each come down with their
    own status, length, fields and body."""
    import random

    rnd = random.Random(11)
    replies = []
    for i in range(150):
        status = rnd.choice([200, 200, 200, 404, 500, 201])
        body = b"x" * rnd.choice([5, 5, 5, 12, 0, 700])
        fields = rnd.choice([[], [], [("X-V", "a")], [("X-V", "b"), ("X-W", "1")]])
        replies.append(Reply(status=status, body=body, headers=[("X-I", str(i)), *fields]
                             if rnd.random() < 0.3 else list(fields),
                             chunked=rnd.random() < 0.15))
    backend.handler = lambda seen: replies[int(seen.target.split("=")[1])]
    c = await Client.open(shield.port)
    for i, want in enumerate(replies):
        head = rnd.random() < 0.1
        await c.send(b"%s /r?i=%d HTTP/1.1\r\nHost: shop\r\n\r\n"
                     % (b"HEAD" if head else b"GET", i))
        status, headers, body = await c.response(head_only=head)
        assert status == want.status, i
        assert body == (b"" if head else want.body), i
        assert [(k, v) for k, v in headers.items() if k.startswith("x-")] == [
            (k.lower(), v) for k, v in want.headers], i
        if head:
            pass  # (no body, and no framing header for one that was not sent)
        elif want.chunked:
            assert headers.get("transfer-encoding") == "chunked", i
        else:
            assert headers["content-length"] == str(len(want.body)), i
    c.close()


async def test_pipelined_requests_are_answered_in_order(shield: Shield, backend: Backend) -> None:
    backend.handler = lambda s: Reply(body=s.target.encode(), delay=0.05 if s.target == "/1" else 0)
    c = await Client.open(shield.port)
    await c.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: shop\r\n\r\n" % i for i in range(1, 4)))
    bodies = [(await c.response())[2] for _ in range(3)]
    c.close()
    assert bodies == [b"/1", b"/2", b"/3"]


async def test_chunked_bodies_stream_both_ways_intact(shield: Shield, backend: Backend) -> None:
    backend.handler = lambda s: Reply(body=s.body[::-1], chunked=True)
    payload = bytes(range(256)) * 4000  # ~1 MB
    c = await Client.open(shield.port)
    await c.send(b"POST /up HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(payload), 65536):
        piece = payload[i:i + 65536]
        await c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    await c.send(b"0\r\n\r\n")
    status, headers, body = await c.response(timeout=20)
    c.close()
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert body == payload[::-1]
    assert backend.seen[0].body == payload
    assert backend.seen[0].header("transfer-encoding") == "chunked"


async def test_fixed_length_bodies_keep_their_length(shield: Shield, backend: Backend) -> None:
    backend.handler = lambda s: Reply(body=s.body + b"!")
    c = await Client.open(shield.port)
    await c.send(b"PUT /x HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello")
    status, headers, body = await c.response()
    c.close()
    assert (status, headers["content-length"], body) == (200, "6", b"hello!")
    assert backend.seen[0].header("content-length") == "5"


async def test_head_204_and_http_1_0(shield: Shield, backend: Backend) -> None:
    backend.handler = lambda s: Reply(status=204) if s.target == "/empty" else Reply(body=b"12345")
    c = await Client.open(shield.port)
    await c.send(b"HEAD /h HTTP/1.1\r\nHost: shop\r\n\r\n")
    status, headers, _ = await c.response(head_only=True)
    assert (status, headers["content-length"]) == (200, "5")
    await c.send(b"GET /empty HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert (await c.response())[0] == 204
    await c.send(b"GET /after HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert (await c.response())[2] == b"12345"
    c.close()
    out = await send_raw(shield.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out and out.endswith(b"12345")


async def test_expect_100_continue_is_answered_by_the_shield(shield: Shield, backend: Backend) -> None:
    c = await Client.open(shield.port)
    await c.send(b"POST /e HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    status, _, _ = await c.response()
    assert status == 100
    await c.send(b"abc")
    assert (await c.response())[0] == 200
    c.close()
    assert backend.seen[0].body == b"abc"
    assert backend.seen[0].header("expect") is None


async def test_forwarded_for_from_an_untrusted_peer_is_replaced(shield: Shield, backend: Backend) -> None:
    out = await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 6.6.6.6\r\n"
                                      b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    seen = backend.seen[0]
    assert seen.header("x-forwarded-for") == "127.0.0.1"
    assert seen.header("x-forwarded-proto") == "http"


async def test_trusted_proxy_forwarded_for_gives_the_client_address(backend: Backend, tmp_path: Path) -> None:
    gate = RecordingGate()
    log = tmp_path / "access.log"
    config = build_config(shield_config([backend.url], trusted_proxies=["127.0.0.0/8"],
                                        access_log=str(log)))
    async with run_shield(config, Wiring(gate=gate)) as shield:
        out = await send_raw(shield.port, b"GET /p?q=1 HTTP/1.1\r\nHost: shop\r\n"
                                          b"X-Forwarded-For: 203.0.113.9, 127.0.0.2\r\n"
                                          b"User-Agent: Mozilla/5.0\r\nReferer: http://r/\r\n"
                                          b"Cookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
    assert backend.seen[0].header("x-forwarded-for") == "203.0.113.9, 127.0.0.2, 127.0.0.1"
    facts = gate.facts[0]
    assert (facts.client, facts.method, facts.path, facts.query, facts.host) == (
        "203.0.113.9", "GET", "/p", "q=1", "shop")
    assert (facts.user_agent, facts.referer, facts.cookie, facts.tls) == (
        "Mozilla/5.0", "http://r/", "a=1; b=2", False)
    line = log.read_text()
    assert re.fullmatch(
        r'203\.0\.113\.9 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /p\?q=1 HTTP/1\.1" 200 5 '
        r'"http://r/" "Mozilla/5\.0" rt=\d+\.\d{3} up=127\.0\.0\.1:' + str(backend.port)
        + r' ut=\d+\.\d{3} us=200 o=ok d=allow c=customer s=0 v=0\n', line), line


async def test_enforced_decisions_never_reach_the_backend(backend: Backend, tmp_path: Path) -> None:
    gate = RecordingGate()
    events: list[RequestEvent] = []
    log = tmp_path / "access.log"
    config = build_config(shield_config([backend.url], access_log=str(log)))
    async with run_shield(config, Wiring(gate=gate, sinks=[events.append])) as shield:
        # a blocked POST: answered from the head alone, body never awaited
        c = await Client.open(shield.port)
        await c.send(b"POST /blocked HTTP/1.1\r\nHost: shop\r\nContent-Length: 100000\r\n\r\n")
        status, _, body = await c.response()
        assert (status, body) == (403, b"no\n")
        assert await c.closed()
        # a limit keeps the connection; the next request goes through
        c = await Client.open(shield.port)
        await c.send(b"GET /limited HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert (await c.response())[0] == 429
        await c.send(b"GET /shadow HTTP/1.1\r\nHost: shop\r\n\r\n")
        status, headers, _ = await c.response()
        assert status == 200
        assert headers["set-cookie"] == "sw_s=abc; HttpOnly"
        c.close()
    assert [s.target for s in backend.seen] == ["/shadow"]
    assert gate.observed == [("/shadow", 200)]
    assert [(e.path, e.status, e.outcome, e.decision, e.cls) for e in events] == [
        ("/blocked", 403, Outcome.SHIELD, "block", "suspect"),
        ("/limited", 429, Outcome.SHIELD, "limit", "unknown"),
        ("/shadow", 200, Outcome.OK, "shadow-block", "suspect"),
    ]
    assert events[2].upstream == f"127.0.0.1:{backend.port}" and events[2].upstream_time >= 0
    assert events[0].upstream == "" and events[0].upstream_time == -1.0
    lines = log.read_text().splitlines()
    assert [re.search(r'" (\d+) .* o=(\S+) d=(\S+) c=(\S+)', ln).groups() for ln in lines] == [  # type: ignore[union-attr]
        ("403", "shield", "block", "suspect"), ("429", "shield", "limit", "unknown"),
        ("200", "ok", "shadow-block", "suspect")]


async def test_admission_sheds_with_retry_after_and_releases_what_it_admitted(backend: Backend) -> None:
    admission = ShedAll()

    class ClassGate(RecordingGate):
        def decide(self, facts: RequestFacts) -> Decision:
            cls = ClientClass.SUSPECT if facts.path == "/shed" else ClientClass.VERIFIED
            return Decision(Action.ALLOW, cls)

    config = build_config(shield_config([backend.url]))
    async with run_shield(config, Wiring(gate=ClassGate(), admission=admission)) as shield:
        c = await Client.open(shield.port)
        await c.send(b"GET /ok HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert (await c.response())[0] == 200
        await c.send(b"GET /shed HTTP/1.1\r\nHost: shop\r\n\r\n")
        status, headers, _ = await c.response()
        assert (status, headers["retry-after"]) == (503, "7")
        c.close()
    key = f"127.0.0.1:{backend.port}"
    assert admission.acquired == [(key, ClientClass.VERIFIED), (key, ClientClass.SUSPECT)]
    assert admission.released == [(key, True)]
    assert [s.target for s in backend.seen] == ["/ok"]


async def test_admin_health_metrics_and_route_auth(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from shieldwall.admin_api import AdminRequest, AdminResponse, AdminRoute

    async def hello(req: AdminRequest) -> AdminResponse:
        return AdminResponse.of_json({"hello": req.query.get("n", "")})

    routes = [AdminRoute("GET", "/api/hello", hello), AdminRoute("GET", "/api/open", hello, auth=False)]
    monkeypatch.delenv("SHIELDWALL_ADMIN_TOKEN", raising=False)
    config = build_config(shield_config([backend.url]))
    async with run_shield(config, Wiring(routes=routes)) as shield:
        await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        health = await send_raw(shield.admin_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200") and b'"status": "ok"' in health
        metrics = await send_raw(shield.admin_port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        assert b'shieldwall_requests_total{decision="allow",outcome="ok",status="200"} 1.0' in metrics
        assert b'shieldwall_upstream_healthy{backend="127.0.0.1:%d"} 1.0' % backend.port in metrics
        refused = await send_raw(shield.admin_port, b"GET /api/hello HTTP/1.1\r\nHost: a\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 401") and b"no admin token is configured" in refused
        opened = await send_raw(shield.admin_port, b"GET /api/open?n=2 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert opened.startswith(b"HTTP/1.1 200") and b'{"hello": "2"}' in opened
    config = build_config(shield_config([backend.url], admin={"listen": "127.0.0.1:0", "token": "s3cret"}))
    async with run_shield(config, Wiring(routes=routes)) as shield:
        wrong = await send_raw(shield.admin_port, b"GET /api/hello HTTP/1.1\r\nHost: a\r\n"
                                                  b"Authorization: Bearer nope\r\n\r\n")
        assert wrong.startswith(b"HTTP/1.1 401")
        right = await send_raw(shield.admin_port, b"GET /api/hello?n=1 HTTP/1.1\r\nHost: a\r\n"
                                                  b"Authorization: Bearer s3cret\r\n\r\n")
        assert right.startswith(b"HTTP/1.1 200") and b'{"hello": "1"}' in right


async def test_the_detectors_row_is_the_row_it_makes_of_the_requests_event(
        backend: Backend) -> None:
    """The proxy hands the detector its row directly (no event object per
    request): exactly what WindowBuilder.add_event makes of the event, so the
    live counts are the offline ones."""
    events: list[RequestEvent] = []
    rows: list[tuple[object, ...]] = []
    config = build_config(shield_config([backend.url]))
    async with run_shield(config, Wiring(gate=RecordingGate(), sinks=[events.append],
                                         row_sinks=[rows.append])) as shield:
        c = await Client.open(shield.port)
        for target in (b"/p?q=1", b"/blocked", b"/static/a.css"):
            await c.send(b"GET " + target + b" HTTP/1.1\r\nHost: shop\r\n"
                         b"User-Agent: UA/1\r\n\r\n")
            await c.response()
            if target == b"/blocked":
                c.close()
                c = await Client.open(shield.port)
        c.close()
    assert len(events) == len(rows) == 3
    assert rows == [(e.time + e.request_time, e.client, e.path, e.query, e.status, e.bytes_sent,
                     e.request_time, e.user_agent, e.session, e.verified, str(e.outcome),
                     e.upstream_time) for e in events]


async def test_a_sink_that_raises_does_not_break_the_request(backend: Backend) -> None:
    def bad_sink(event: RequestEvent) -> None:
        raise RuntimeError("boom")

    config = build_config(shield_config([backend.url]))
    async with run_shield(config, Wiring(sinks=[bad_sink])) as shield:
        out = await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")



async def test_upload_to_a_backend_that_does_not_read_is_held_back_not_buffered(
        backend: Backend) -> None:
    backend.hold_reading = True
    total = 64 * 1024 * 1024
    config = build_config(shield_config([backend.url], limits={"max_body_bytes": 2 * total}))
    async with run_shield(config) as shield:
        sent = await _upload(shield, total)
    # Kernel buffers on two hops plus one transport high-water mark: megabytes,
    # not the whole body.
    assert 0 < sent < total // 2, sent


async def _upload(shield: Shield, total: int) -> int:
    c = await Client.open(shield.port)
    await c.send(b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n" % total)
    piece = b"u" * 65536
    sent = 0
    try:
        async with asyncio.timeout(2.0):
            while sent < total:
                await c.send(piece)
                sent += len(piece)
    except TimeoutError:
        pass
    c.close()
    return sent


async def test_download_to_a_client_that_does_not_read_pauses_the_backend(
        shield: Shield, backend: Backend) -> None:
    big = b"d" * (48 * 1024 * 1024)
    backend.handler = lambda s: Reply(body=big)
    _reader, writer = await asyncio.open_connection("127.0.0.1", shield.port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: shop\r\n\r\n")
    await asyncio.sleep(1.0)  # the client reads nothing
    (conn,) = backend.open_conns
    assert conn.transport is not None
    # The shield stopped reading from the backend: most of the body is still
    # waiting in the backend's own buffer, not in the shield's memory.
    assert conn.transport.get_write_buffer_size() > len(big) // 2
    writer.close()
