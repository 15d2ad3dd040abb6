"""Strict framing through the real proxy to a real backend that records every
byte: each bad framing is answered with its status and ``Connection: close``,
the connection is closed, and no request is smuggled to the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from proxy_backends import BAD_ONLY_HEAD_ERRORS, Backend, send_raw, shield_config, status_of
from test_proxy_framing import BAD

from shieldwall.config import build_config
from shieldwall.proxy.worker import Shield, run_shield


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Shield, Backend]]:
    backend = await Backend().start()
    config = build_config(shield_config([backend.url]))
    async with run_shield(config) as shield:
        yield shield, backend
    await backend.stop()


@pytest.mark.parametrize(("name", "data", "status"), BAD, ids=[b[0] for b in BAD])
async def test_bad_framing_gets_its_status_and_the_connection_closed(
        rig: tuple[Shield, Backend], name: str, data: bytes, status: int) -> None:
    shield, backend = rig
    out = await send_raw(shield.port, data)
    assert status_of(out) == status, (name, out[:200])
    head = out.split(b"\r\n\r\n")[0]
    assert b"\r\nConnection: close" in head
    # send_raw returned: the shield closed the connection. A bad chunk comes
    # after a good head, so the backend may have seen the start of that
    # request, but never a complete one; for every other case, not a byte.
    assert backend.seen == []
    if name in BAD_ONLY_HEAD_ERRORS:
        assert bytes(backend.raw) == b""


LEGIT = b"GET /legit HTTP/1.1\r\nHost: shop\r\n\r\n"

SMUGGLE = {
    "CL.TE": b"POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"0\r\n\r\nGET /admin HTTP/1.1\r\nX-Ignore: x",
    "TE.CL": b"POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"1e\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
    "TE.TE": b"POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n"
             b"5c\r\nGET /admin HTTP/1.1\r\nHost: shop\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
    "TE.TE obfuscated": b"POST / HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n"
                        b"5c\r\nGET /admin HTTP/1.1\r\n\r\n0\r\n\r\n",
    "TE.TE space": b"POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n"
                   b"5c\r\nGET /admin HTTP/1.1\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("kind", list(SMUGGLE))
async def test_classic_smuggling_payloads_reach_the_backend_as_nothing_but_the_legit_request(
        rig: tuple[Shield, Backend], kind: str) -> None:
    shield, backend = rig
    out = await send_raw(shield.port, LEGIT + SMUGGLE[kind])
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 400 " in out
    assert [(s.method, s.target) for s in backend.seen] == [("GET", "/legit")]
    assert b"/admin" not in bytes(backend.raw)


async def test_a_request_hidden_in_a_valid_chunked_body_stays_body(
        rig: tuple[Shield, Backend]) -> None:
    shield, backend = rig
    inner = b"GET /admin HTTP/1.1\r\nHost: shop\r\n\r\n"
    data = (b"POST /form HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n")
    out = await send_raw(shield.port, data)
    assert status_of(out) == 200
    assert [(s.method, s.target, s.body) for s in backend.seen] == [("POST", "/form", inner)]


async def test_an_absolute_form_request_reaches_the_backend_in_origin_form_with_its_authority_as_host(
        rig: tuple[Shield, Backend]) -> None:
    shield, backend = rig
    out = await send_raw(shield.port, b"GET http://shop.example:8080/p?q=1 HTTP/1.1\r\n"
                                      b"Host: attacker.example\r\nConnection: close\r\n\r\n")
    assert status_of(out) == 200
    [seen] = backend.seen
    assert (seen.method, seen.target) == ("GET", "/p?q=1")
    assert [v for n, v in seen.headers if n.lower() == "host"] == ["shop.example:8080"]
    assert b"attacker" not in bytes(backend.raw)


async def test_empty_lines_before_a_request_are_ignored_but_a_bare_cr_between_requests_is_refused(
        rig: tuple[Shield, Backend]) -> None:
    shield, backend = rig
    out = await send_raw(shield.port, b"\r\n" + LEGIT + b"\r\n" + LEGIT + b"\r" + LEGIT)
    assert out.count(b"HTTP/1.1 200 ") == 2
    assert b"HTTP/1.1 400 " in out and out.endswith(b"400 Bad Request\n")
    assert [(s.method, s.target) for s in backend.seen] == [("GET", "/legit")] * 2
