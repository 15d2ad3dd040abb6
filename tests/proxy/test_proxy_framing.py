"""The request gate, sans-IO: bytes in, events out, every bad framing refused."""

from __future__ import annotations

import pytest

from shieldwall.http.errors import ClientError
from shieldwall.http.framing import (
    BODY,
    END,
    ERROR,
    HEAD,
    FramingLimits,
    RequestFramer,
    RequestHead,
)

GOOD = b"GET /a?x=1 HTTP/1.1\r\nHost: shop\r\nCookie: a=1\r\nCookie: b=2\r\nUser-Agent: ua\r\n\r\n"

# (name, request bytes, status): every case the issue lists, answered 400/413/414/431.
BAD = [
    ("content-length and transfer-encoding",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("transfer-encoding then content-length",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("two equal content-lengths",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("two different content-lengths",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("content-length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("content-length with sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("content-length not a number", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    ("content-length negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("transfer-encoding gzip only", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
    ("transfer-encoding chunked then gzip",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc", 400),
    ("transfer-encoding gzip then chunked",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("transfer-encoding xchunked",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("transfer-encoding twice",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400),
    ("space before colon in transfer-encoding",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("vertical tab in transfer-encoding",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare LF after a header", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    ("bare CR after a header", b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400),
    ("bare CR inside a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: y\rz\r\n\r\n", 400),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: y\x00z\r\n\r\n", 400),
    ("control character in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: y\x01z\r\n\r\n", 400),
    ("DEL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: y\x7fz\r\n\r\n", 400),
    ("invalid character in a name", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", 400),
    ("space in the request target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("unknown HTTP version", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("absolute-form target with another scheme", b"GET ftp://evil/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute-form target with userinfo", b"GET http://u:p@evil/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute-form target with an empty host", b"GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute-form target with a bad port", b"GET http://evil:x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute-form target without Host", b"GET http://evil/ HTTP/1.1\r\n\r\n", 400),
    ("authority-form target", b"GET evil:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("Host with a tab inside", b"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n", 400),
    ("Host with a slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    ("Host with a bad port", b"GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", 400),
    ("empty Host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    ("NUL in Host", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
    ("control character in Host", b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400),
    ("bare CR in Host", b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
    ("DEL in Host", b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n", 400),
    ("control character in an absolute-form host",
     b"GET http://a\x01b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("HTTP/0.9 with headers", b"GET /p HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ("HTTP/0.9 without headers", b"GET /p HTTP/0.9\r\n\r\n", 505),
    ("HTTP/0.9 simple request", b"GET /p\r\n\r\n", 505),
    ("HTTP/2.0 on an HTTP/1 connection", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("an RTSP request line", b"GET / RTSP/1.0\r\nHost: a\r\n\r\n", 400),
    ("an ICE request line", b"SOURCE / ICE/1.0\r\nHost: a\r\n\r\n", 400),
    ("bare CRs before the request line", b"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bare CR after an empty line", b"\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bare LF before the request line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("chunk size not hex",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size overflow",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size with trailing space",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400),
    ("negative chunk size",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk data longer than its size",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400),
    ("request target over the limit", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("header block over the limit",
     b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"p" * 17000 + b"\r\n\r\n", 431),
    ("too many headers", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    ("declared body over the limit",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10485761\r\n\r\n", 413),
    ("websocket upgrade", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 501),
]


def feed_all(data: bytes, one_byte_at_a_time: bool = False,
             limits: FramingLimits | None = None) -> list[tuple[int, object]]:
    framer = RequestFramer(limits or FramingLimits())
    if not one_byte_at_a_time:
        return list(framer.feed(data))
    events: list[tuple[int, object]] = []
    for i in range(len(data)):
        events += framer.feed(data[i:i + 1])
    return events


@pytest.mark.parametrize(("name", "data", "status"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_bad_framing_is_refused_before_any_body_is_released(
        name: str, data: bytes, status: int, bytewise: bool) -> None:
    events = feed_all(data, bytewise)
    assert events, name
    kind, err = events[-1]
    assert kind == ERROR
    assert isinstance(err, ClientError)
    assert err.status == status, (name, err)
    # Never a complete request, and never body bytes of a request whose
    # framing header was refused.
    assert END not in [k for k, _ in events]
    if not name.startswith(("chunk", "negative chunk")):
        assert HEAD not in [k for k, _ in events]


def test_a_good_request_gives_head_and_end_with_facts() -> None:
    for bytewise in (False, True):
        events = feed_all(GOOD, bytewise)
        assert [k for k, _ in events] == [HEAD, END]
        head = events[0][1]
        assert isinstance(head, RequestHead)
        assert (head.method, head.path, head.query, head.host) == ("GET", "/a", "x=1", "shop")
        assert head.cookie == "a=1; b=2"
        assert head.user_agent == "ua"
        assert head.keep_alive


def test_chunked_body_is_dechunked_and_hop_by_hop_headers_removed() -> None:
    data = (b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Secret\r\n"
            b"X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Ok: 1\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    for bytewise in (False, True):
        events = feed_all(data, bytewise)
        kinds = [k for k, _ in events]
        assert kinds[0] == HEAD and kinds[-1] == END
        head = events[0][1]
        assert isinstance(head, RequestHead)
        assert head.chunked and head.content_length == -1
        assert [n for n, _ in head.headers] == [b"Host", b"X-Ok"]
        assert b"".join(p for k, p in events if k == BODY) == b"abcde"  # type: ignore[misc]


def test_an_rtsp_request_pipelined_after_a_good_one_is_refused_alone() -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / RTSP/1.0\r\nHost: a\r\n\r\n"
    for bytewise in (False, True):
        events = feed_all(data, bytewise)
        assert [k for k, _ in events] == [HEAD, END, ERROR]
        assert events[-1][1].status == 400  # type: ignore[attr-defined]


def test_pipelined_requests_come_out_in_order() -> None:
    data = GOOD + b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok" + GOOD
    events = feed_all(data)
    assert [k for k, _ in events] == [HEAD, END, HEAD, BODY, END, HEAD, END]


def test_streamed_chunked_body_over_the_limit_is_413() -> None:
    limits = FramingLimits(max_body_bytes=4)
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
    events = feed_all(data, limits=limits)
    assert events[-1][0] == ERROR
    err = events[-1][1]
    assert isinstance(err, ClientError) and err.status == 413


def test_a_header_line_that_never_ends_is_cut_at_the_limit() -> None:
    framer = RequestFramer(FramingLimits(max_request_line=100, max_header_bytes=1000))
    assert framer.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ") == []
    events: list[tuple[int, object]] = []
    for _ in range(20):
        events += framer.feed(b"y" * 100)
    assert events and events[-1][0] == ERROR
    err = events[-1][1]
    assert isinstance(err, ClientError) and err.status == 431
    assert framer.failed
    assert framer.feed(GOOD) == []


def test_http_1_0_without_keep_alive_closes_and_needs_no_host() -> None:
    events = feed_all(b"GET / HTTP/1.0\r\n\r\n")
    head = events[0][1]
    assert isinstance(head, RequestHead)
    assert head.version == "1.0" and not head.keep_alive


def test_absolute_form_becomes_origin_form_with_its_authority_as_host() -> None:
    """RFC 9112 3.2.2: a server MUST accept absolute-form; a proxy replaces
    the received Host with the target's authority."""
    data = b"GET HTTP://Shop.example:8080/p?q=1 HTTP/1.1\r\nX-A: 1\r\nHost: other\r\n\r\n"
    for bytewise in (False, True):
        events = feed_all(data, bytewise)
        assert [k for k, _ in events] == [HEAD, END]
        head = events[0][1]
        assert isinstance(head, RequestHead)
        assert (head.target, head.path, head.query) == (b"/p?q=1", "/p", "q=1")
        assert head.host == "Shop.example:8080"
        assert head.headers == [(b"Host", b"Shop.example:8080"), (b"X-A", b"1")]


@pytest.mark.parametrize(("target", "origin"), [
    (b"http://shop", b"/"), (b"https://shop?x", b"/?x"), (b"http://[::1]:81/a/b", b"/a/b"),
    (b"http://shop/", b"/"),
])
def test_absolute_form_without_a_path_gets_slash(target: bytes, origin: bytes) -> None:
    events = feed_all(b"GET " + target + b" HTTP/1.0\r\n\r\n")
    head = events[0][1]
    assert isinstance(head, RequestHead)
    assert head.target == origin
    assert [n for n, _ in head.headers] == [b"Host"]


def test_host_keeps_no_trailing_whitespace() -> None:
    head = feed_all(b"GET / HTTP/1.1\r\nHost:  shop.example \t\r\n\r\n")[0][1]
    assert isinstance(head, RequestHead)
    assert head.host == "shop.example"
    assert head.headers == [(b"Host", b"shop.example")]


def test_empty_crlf_lines_before_a_request_are_ignored() -> None:
    """RFC 9112 2.2 lets a server ignore empty lines before the request line
    (old clients send one after a POST body); only whole CRLFs are empty lines."""
    data = b"\r\n\r\n" + GOOD + b"\r\n" + GOOD
    for bytewise in (False, True):
        assert [k for k, _ in feed_all(data, bytewise)] == [HEAD, END, HEAD, END]


POST_CR = b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nx\r\r\n\r\n\ry\r"
CHUNKED_CR = (b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"6\r\n\r\n\r\n\r\r\r\n0\r\nX-T: 1\r\n\r\n")


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_bare_crs_inside_bodies_are_data_but_between_pipelined_requests_are_refused(
        bytewise: bool) -> None:
    good = GOOD + POST_CR + CHUNKED_CR + b"\r\n" + GOOD
    events = feed_all(good, bytewise)
    assert [k for k, _ in events if k != BODY] == [HEAD, END, HEAD, END, HEAD, END, HEAD, END]
    assert b"".join(p for k, p in events if k == BODY) == b"x\r\r\n\r\n\ry\r" + b"\r\n\r\n\r\r"  # type: ignore[misc]
    for after in (GOOD, POST_CR, CHUNKED_CR):
        events = feed_all(GOOD + after + b"\r" + GOOD, bytewise)
        kinds = [k for k, _ in events if k != BODY]
        assert kinds == [HEAD, END, HEAD, END, ERROR], after
        err = events[-1][1]
        assert isinstance(err, ClientError) and err.status == 400
        assert "bare CR" in err.reason


_HEAD_FIELDS = ("chunked", "content_length", "cookie", "expect_continue", "has_body", "headers",
                "host", "keep_alive", "method", "path", "query", "referer", "target",
                "user_agent", "version", "xff")


def _outcome(events: list[tuple[int, object]]) -> list[object]:
    """Events as comparable values: a head as all its fields."""
    out: list[object] = []
    for kind, payload in events:
        if isinstance(payload, RequestHead):
            out.append((kind, tuple(getattr(payload, f) for f in _HEAD_FIELDS)))
        elif isinstance(payload, ClientError):
            out.append((kind, payload.status))
        else:
            out.append((kind, payload))
    return out


def test_a_repeated_field_block_gives_what_a_fresh_framer_gives() -> None:
    """A head whose header lines repeat the last one's on its connection is
    read from its request line alone (RequestFramer.feed): 600 random
    requests fed one per read to one framer (so the block repeats often,
    with new targets, methods, versions, absolute forms, odd bytes in the
    target, bodies and closes among them) give the same events as each fed
    to a fresh framer."""
    import random

    rnd = random.Random(11)
    targets = [b"/", b"/a?x=1", b"/p/%41", b"/s?q=a+b&r=~", b"/x y", b"/\x7f", b"/q?a=\"b\"",
               b"http://other:81/p", b"*", b"/" + b"a" * 9000, b"/a#f", b"/\xc3\xa9"]
    blocks = [b"Host: shop\r\nUser-Agent: ua\r\n", b"Host: shop\r\nCookie: a=1\r\n",
              b"Host: shop\r\nConnection: close\r\n", b"User-Agent: ua\r\n",
              b"Host: shop\r\nContent-Length: 3\r\n", b"Host: shop\r\nConnection: x-a\r\nX-A: 1\r\n",
              b"Host: shop\r\nX-Forwarded-For: 1.2.3.4\r\nReferer: /r\r\n"]
    framer = RequestFramer(FramingLimits())
    hits = 0
    for _ in range(600):
        method = b"GET" if rnd.random() < 0.8 else rnd.choice(
            [b"HEAD", b"OPTIONS", b"POST", b"DELETE"])
        version = b"1.1" if rnd.random() < 0.85 else rnd.choice([b"1.0", b"1.2"])
        block = blocks[0] if rnd.random() < 0.7 else rnd.choice(blocks)
        body = b"abc" if b"Content-Length" in block else b""
        target = rnd.choice(targets[:4]) if rnd.random() < 0.6 else rnd.choice(targets)
        data = (method + b" " + target + b" HTTP/" + version + b"\r\n" + block
                + b"\r\n" + body)
        got = framer.feed(data)
        want = RequestFramer(FramingLimits()).feed(data)
        assert _outcome(got) == _outcome(want), data
        if got and isinstance(got[0][1], RequestHead) and framer._again is not None \
                and got[0][1].headers is framer._again.headers and got[0][1] is not framer._again:
            hits += 1
        if not got or got[-1][0] != END or not want[0][1].keep_alive:
            framer = RequestFramer(FramingLimits())  # (the connection would close)
    assert hits > 60


def test_a_bare_cr_read_alone_before_a_request_is_refused_as_in_one_read() -> None:
    """A CR between requests that is not followed by its LF is refused
    whether the next request comes in the same read or the next one (the
    one-read common case of RequestFramer.feed must not skip the check)."""
    req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    for first in (b"", req):
        framer = RequestFramer(FramingLimits())
        if first:
            assert [k for k, _ in framer.feed(first)] == [HEAD, END]
        assert framer.feed(b"\r") == []
        events = framer.feed(req)
        assert [k for k, _ in events] == [ERROR] and events[0][1].status == 400
