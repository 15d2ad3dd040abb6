"""A connection's requests that repeat (a flood's, a poller's, wrk's) are
decided on facts kept from the last one (the proxy builds no new
RequestFacts when the head shares the last one's strings); what must hold:
each request is still decided on what it carries, so a changed cookie,
path or query is seen at once."""

from __future__ import annotations

from proxy_backends import Client
from test_proxy_early import _req, guarded_shield


async def test_repeated_requests_on_one_connection_are_each_decided_on_their_own_facts(
        ) -> None:
    async with guarded_shield() as (shield, _backend, rt):
        c = await Client.open(shield.port)
        try:
            # no session yet: the same request twice is offered a session twice
            for _ in range(2):
                await c.send(_req("/"))
                status, headers, _ = await c.response()
                assert status == 200 and headers["set-cookie"].startswith("sw_s=")
            session = headers["set-cookie"].split(";")[0]
            # the cookie came back: a returning browser, twice, gets no new one
            for _ in range(2):
                await c.send(_req("/", f"Cookie: {session}\r\n"))
                status, headers, _ = await c.response()
                assert status == 200 and "set-cookie" not in headers
            # another path on the same connection: its own route and limit
            statuses = []
            for _ in range(3):
                await c.send(_req("/limited", f"Cookie: {session}\r\n"))
                status, _, _ = await c.response()
                statuses.append(status)
            assert statuses == [200, 429, 429]
            # back to the page: allowed again, with the session
            await c.send(_req("/?q=1", f"Cookie: {session}\r\n"))
            status, headers, _ = await c.response()
            assert status == 200 and "set-cookie" not in headers
        finally:
            c.close()
        counts = rt.gate.counts  # once each: nothing decided twice, nothing skipped
        assert counts["allow"] == 6 and counts["limit"] == 2


async def test_a_bare_request_that_changes_only_its_cookie_is_decided_on_the_new_cookie(
        ) -> None:
    """HTTP/1.0 without Host, User-Agent or Referer: every field but the
    cookie is the empty string, the same object whichever head it came from,
    so only the cookie itself tells the two requests apart."""
    bare = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
    async with guarded_shield() as (shield, _backend, _rt):
        c = await Client.open(shield.port)
        try:
            await c.send(bare + b"\r\n")
            status, headers, _ = await c.response()
            assert status == 200 and "set-cookie" in headers
            session = headers["set-cookie"].split(";")[0].encode()
            await c.send(bare + b"Cookie: " + session + b"\r\n\r\n")
            status, headers, _ = await c.response()
            assert status == 200 and "set-cookie" not in headers
            await c.send(bare + b"\r\n")
            status, headers, _ = await c.response()
            assert status == 200 and "set-cookie" in headers
        finally:
            c.close()
