"""The shoppers' browser passes a challenge the way docs/CHALLENGE.md says a
browser does: parse the meta tag, find the nonce, GET verify, follow the 302,
keep the pass cookie; a challenged POST is sent again after the check."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from shieldwall.drill import challenge
from shieldwall.drill.httpclient import HTTPError
from shieldwall.drill.shoppers import Browser

DIFFICULTY = 10


class SpecShield:
    """A minimal server speaking the documented wire protocol, for the browser to pass."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.bad_answers = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ")
            hdrs = {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)}
            body = await reader.readexactly(int(hdrs.get("content-length", "0")))
            self.seen.append((method, target, body))
            url = urlsplit(target)
            if url.path == "/.shieldwall/verify":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                digest = hashlib.sha256(f"{q['c']}:{q['n']}".encode()).digest()
                if challenge.leading_zero_bits(digest) >= DIFFICULTY:
                    resp = (f"HTTP/1.1 302 Found\r\nLocation: {q['r']}\r\nSet-Cookie: sw_pass=ok; Path=/; HttpOnly"
                            "\r\nContent-Length: 0\r\n\r\n").encode()
                else:
                    self.bad_answers += 1
                    resp = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
            elif "sw_pass=ok" not in hdrs.get("cookie", ""):
                meta = json.dumps({"challenge": "c-" + str(len(self.seen)), "difficulty": DIFFICULTY,
                                   "verify": "/.shieldwall/verify", "redirect": target})
                page = (f'<!doctype html><html><head><meta charset="utf-8"><meta name="shieldwall-challenge" '
                        f'content="{html.escape(meta, quote=True)}"></head><body>One moment</body></html>').encode()
                resp = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: "
                        + str(len(page)).encode() + b"\r\n\r\n" + page)
            else:
                page = f"shop page {method} {target} {body.decode()}".encode()
                resp = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(page)).encode() + b"\r\n\r\n" + page
            writer.write(resp)
            await writer.drain()
        writer.close()


async def test_a_shopper_solves_the_challenge_and_keeps_the_pass() -> None:
    shield = SpecShield()
    server = await asyncio.start_server(shield.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    solved = []
    b = Browser("127.0.0.1", port, "127.10.3.4", None, lambda: solved.append(1))
    try:
        r1 = await b.fetch("GET", "/product/7?x=1")
        assert r1.status == 200 and r1.body == b"shop page GET /product/7?x=1 "
        assert solved == [1] and shield.bad_answers == 0
        assert b.jar.cookies == {"sw_pass": "ok"}
        r2 = await b.fetch("GET", "/cart")  # the pass is kept: no second challenge
        assert r2.status == 200 and solved == [1]
    finally:
        b.close()
        server.close()
        await server.wait_closed()
    verify = [t for m, t, _ in shield.seen if t.startswith("/.shieldwall/verify")]
    assert len(verify) == 1 and "r=%2Fproduct%2F7%3Fx%3D1" in verify[0]


async def test_a_challenged_post_is_sent_again_after_the_check() -> None:
    shield = SpecShield()
    server = await asyncio.start_server(shield.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    b = Browser("127.0.0.1", port, "127.10.3.5", None)
    try:
        r = await b.fetch("POST", "/checkout", b"session=s&items=1", [("Idempotency-Key", "k")])
    finally:
        b.close()
        server.close()
        await server.wait_closed()
    assert r.status == 200 and r.body == b"shop page POST /checkout session=s&items=1"
    assert [m for m, _, _ in shield.seen] == ["POST", "GET", "POST"]


async def test_a_smart_bot_solves_one_challenge_per_bot_then_floods_with_the_pass() -> None:
    import time

    from shieldwall.drill.attackers import Attack, AttackSpec, Kind
    from shieldwall.drill.stats import AttackStats

    shield = SpecShield()
    server = await asyncio.start_server(shield.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t0 = time.monotonic()
    stats = AttackStats()
    atk = Attack(AttackSpec(Kind.SMART_BOT, 200.0, sources=10), "127.0.0.1", port, stats,
                 lambda: time.monotonic() - t0, lambda: "smart", seed=1)
    await atk.run(2.0)
    server.close()
    verifies = [t for _, t, _ in shield.seen if t.startswith("/.shieldwall/verify")]
    assert len(verifies) == 10 and shield.bad_answers == 0
    floods = [t for _, t, _ in shield.seen if t == "/"]
    assert len(floods) > 100
    assert stats.total().challenged == 0  # once passed, no bot is challenged again


async def test_a_browser_keeps_its_connection_alive_unless_told_to_close() -> None:
    """A person's browser reuses its connection: behind a balancer that
    spreads connections, a new connection per request would put every
    request of one shopper on another node."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            close = b"/bye" in head.split(b"\r\n", 1)[0]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                         + (b"Connection: close\r\n" if close else b"") + b"\r\nok")
            await writer.drain()
            if close:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    b = Browser("127.0.0.1", port, "127.0.0.1", None)
    try:
        for path in ("/", "/static/shop.css", "/static/shop.js", "/img/logo.png"):
            assert (await b.fetch("GET", path)).status == 200
        assert connections == 1 and b.conn.open
        await b.fetch("GET", "/bye")
        assert not b.conn.open
        await b.fetch("GET", "/")
        assert connections == 2
    finally:
        b.close()
        server.close()
        await server.wait_closed()


async def test_a_broken_kept_alive_connection_is_retried_once_for_a_get_not_a_post() -> None:
    """The server answers one request per connection and then drops it
    without saying so (a node killed behind a balancer): a browser's next GET
    on that connection fails, and is sent again on a new one; a POST is not."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # wait for the next request, then drop the connection unanswered
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    b = Browser("127.0.0.1", port, "127.0.0.1", None)
    try:
        assert (await b.fetch("GET", "/")).status == 200
        assert (await b.fetch("GET", "/static/shop.css")).status == 200  # retried on a new connection
        assert connections == 2
        with pytest.raises(HTTPError):
            await b.fetch("POST", "/checkout", b"x=1")  # never sent twice
        assert connections == 2
    finally:
        b.close()
        server.close()
        await server.wait_closed()
