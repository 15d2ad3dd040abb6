"""The upstream's response head, cut from the bytes as received: the field
lines forwarded as sent and the pairs llhttp would report, hop-by-hop ones
left out (ruled out by first letter and where the colon is before any
lowering), however the bytes arrive and after an interim 1xx."""

from __future__ import annotations

import random

import httptools

from shieldwall.proxy import upstream
from shieldwall.proxy.balancer import BackendState
from shieldwall.proxy.upstream import BAD_RESPONSE, FieldCuts, Pool, UpstreamConnection

_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
        b"trailer", b"upgrade", b"content-length"}


class _Callbacks:
    """What llhttp reports header by header (the reference)."""

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.heads = 0

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.heads += 1


class _Owner:
    def __init__(self) -> None:
        self.head: tuple[int, bytes, list[tuple[bytes, bytes]], int] | None = None
        self.lines = b""
        self.body = b""
        self.ended = False
        self.failed = 0

    def upstream_head(self, up: UpstreamConnection, status: int, content_length: int) -> None:
        self.head = (status, up.reason(), list(up.header_list()), content_length)
        self.lines = up.status_line + up.fields

    def upstream_body(self, data: bytes) -> None:
        self.body += data

    def upstream_end(self, up: UpstreamConnection) -> None:
        self.ended = True

    def upstream_failed(self, up: UpstreamConnection, kind: int) -> None:
        self.failed = kind

    def upstream_pause(self) -> None: ...
    def upstream_resume(self) -> None: ...
    def flush_out(self) -> None: ...


_NAMES = [b"Server", b"Date", b"X-A", b"set-cookie", b"Vary", b"X-Empty", b"Cache-Control",
          b"ETag", b"x-y_z.1", b"Content-Type", b"Keep-Alive", b"Trailer", b"Upgrade", b"TE",
          b"Proxy-Connection", b"connection", b"Tkeep-alive", b"Content-Lengthy"]
_VALUES = [b"nginx", b"  spaced", b"a\tb", b"trailing \t", b"", b"caf\xe9", b"a:b:c",
           b'W/"1"', b"\t lead"]


def _head(rnd: random.Random, reason: bytes, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    fields = [(rnd.choice(_NAMES), rnd.choice(_VALUES)) for _ in range(rnd.randrange(0, 8))]
    raw = b"HTTP/1.1 200 " + reason + b"\r\n" + b"".join(
        n + b":" + v + b"\r\n" for n, v in fields) + b"Content-Length: %d\r\n\r\n" % len(body)
    return raw, fields


def _connection(owner: _Owner) -> UpstreamConnection:
    up = UpstreamConnection(Pool(8, 1.0, 1.0), BackendState("b", "127.0.0.1", 1))
    up.start(owner, head_request=False)
    return up


def test_a_head_in_pieces_and_after_an_interim_response() -> None:
    rnd = random.Random(9)
    for _ in range(200):
        raw, fields = _head(rnd, b"OK", b"hello")
        ref = _Callbacks()
        httptools.HttpResponseParser(ref).feed_data(raw + b"hello")
        want = [(n, v) for n, v in ref.fields if n.lower() not in _HOP]
        data = (b"HTTP/1.1 100 Continue\r\nX-I: 1\r\n\r\n" if rnd.random() < 0.3 else b"") \
            + raw + b"hello"
        owner = _Owner()
        up = _connection(owner)
        cuts = sorted(rnd.sample(range(1, len(data)), rnd.randrange(0, 5)))
        for a, z in zip([0, *cuts], [*cuts, len(data)], strict=True):
            up.data_received(data[a:z])
        assert owner.failed == 0 and owner.ended and owner.body == b"hello"
        assert owner.head == (200, b"OK", want, 5)
        sent = [(n, v) for n, v in fields if n.lower() not in _HOP]
        assert owner.lines == b"HTTP/1.1 200 OK\r\n" + b"".join(
            n + b":" + v + b"\r\n" for n, v in sent)


def test_status_lines_go_on_as_http_1_1() -> None:
    for raw, line in [(b"HTTP/1.0 404 Not Found\r\n", b"HTTP/1.1 404 Not Found\r\n"),
                      (b"HTTP/1.1 200\r\n", b"HTTP/1.1 200 \r\n"),
                      (b"HTTP/1.0 200\r\n", b"HTTP/1.1 200 \r\n"),
                      (b"\r\nHTTP/1.1 201 Made it\r\n", b"HTTP/1.1 201 Made it\r\n")]:
        owner = _Owner()
        up = _connection(owner)
        up.data_received(raw + b"Content-Length: 0\r\nX: 1\r\n\r\n")
        assert owner.ended and owner.lines == line + b"X: 1\r\n"
        assert owner.head is not None and owner.head[0] == int(line[9:12])


def test_framing_facts_of_the_hop_by_hop_fields() -> None:
    owner = _Owner()
    up = _connection(owner)
    up.data_received(b"HTTP/1.1 200 OK\r\ncOnNeCtIoN:  Close \r\nTransfer-Encoding: chunked\r\n"
                     b"Trailer: x\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert owner.ended and owner.body == b"hi" and up.chunked and not up.reusable
    assert owner.lines == b"HTTP/1.1 200 OK\r\n" and owner.head == (200, b"OK", [], -1)
    owner = _Owner()
    up = _connection(owner)
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2 \r\nConnection: keep-alive\r\n\r\nhi")
    assert owner.head == (200, b"OK", [], 2) and up.reusable and owner.lines == b"HTTP/1.1 200 OK\r\n"


def test_a_head_that_never_ends_is_a_bad_response() -> None:
    owner = _Owner()
    up = _connection(owner)
    up.data_received(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    for _ in range(80):
        up.data_received(line)
        if owner.failed:
            break
    assert owner.failed == BAD_RESPONSE and owner.head is None and not up.reusable


def _exchange(up: UpstreamConnection, data: bytes, pairs: bool) -> tuple[object, ...]:
    """One response on ``up``: what its owner got, and the framing facts."""
    owner = _Owner()
    up.start(owner, head_request=False)
    if not pairs:  # an owner that never asks for the pairs (no guard, no cache)
        owner.upstream_head = lambda u, s, cl: setattr(  # type: ignore[method-assign]
            owner, "lines", u.status_line + u.fields)
    up.data_received(data)
    return (owner.head, owner.lines, owner.body, owner.ended, owner.failed, up.content_length,
            up.chunked, up.reusable)


def _unremembered(data: bytes, pairs: bool) -> tuple[object, ...]:
    """The same response on a new connection of a worker that remembers no
    field block: the reference."""
    kept = upstream._CUTS.last, dict(upstream._CUTS.recent)
    upstream._CUTS.last = None
    upstream._CUTS.recent.clear()
    try:
        return _exchange(_connection(_Owner()), data, pairs)
    finally:
        upstream._CUTS.last = kept[0]
        upstream._CUTS.recent.clear()
        upstream._CUTS.recent.update(kept[1])


def test_each_response_goes_on_with_its_own_fields_on_any_connection() -> None:
    """A backend repeats its field blocks byte for byte from one response to
    the next, on all its connections (what was made of a block is kept for
    the worker): each response still goes on with exactly its own fields,
    pairs and framing, as it would with nothing remembered, whichever
    connection it comes on and whatever came before."""
    rnd = random.Random(11)
    kinds = [b"Content-Length: 5\r\n", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"]
    bodies = {kinds[0]: b"hello", kinds[1]: b"hey", kinds[2]: b"5\r\nhello\r\n0\r\n\r\n"}
    blocks = [b"Server: a\r\nDate: 1\r\n", b"Server: a\r\nDate: 2\r\n", b"Set-Cookie: c=1\r\n", b"",
              b"Server: a\r\n", b"Server: a\r\nDate: 1\r\nX: y\r\n"]
    ups = [_connection(_Owner()) for _ in range(4)]
    for _ in range(400):
        kind = rnd.choice(kinds)
        data = b"HTTP/1.1 200 OK\r\n" + rnd.choice(blocks) + kind + b"\r\n" + bodies[kind]
        pairs = rnd.random() < 0.7
        assert _exchange(rnd.choice(ups), data, pairs) == _unremembered(data, pairs), data
    # a block that closes the connection is still seen to close it when repeated,
    # on the connection that saw it first and on another
    data = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    up = _connection(_Owner())
    first = _exchange(up, data, True)
    up.reusable = True
    up.parser = httptools.HttpResponseParser(up)
    assert _exchange(up, data, True) == first and not up.reusable
    other = _connection(_Owner())
    assert _exchange(other, data, True) == first and not other.reusable


def test_the_worker_remembers_a_bounded_number_of_field_blocks() -> None:
    """A backend whose every block is new (a request id per response) does
    not grow the memory past FieldCuts.MAX blocks, and each response still
    goes on with its own fields."""
    up = _connection(_Owner())
    for i in range(3 * FieldCuts.MAX):
        data = b"HTTP/1.1 200 OK\r\nX-Request-Id: %d\r\nContent-Length: 0\r\n\r\n" % i
        head, lines = _exchange(up, data, True)[:2]
        assert head == (200, b"OK", [(b"X-Request-Id", b"%d" % i)], 0)
        assert lines == b"HTTP/1.1 200 OK\r\nX-Request-Id: %d\r\n" % i
        assert len(upstream._CUTS.recent) <= FieldCuts.MAX
