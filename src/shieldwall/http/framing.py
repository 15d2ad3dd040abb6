"""The request gate: strict HTTP/1.1 request framing over llhttp, sans-IO.

Bytes go in (:meth:`RequestFramer.feed`), events come out (a list of
``(kind, payload)`` tuples); nothing here owns a socket, awaits or reads a
clock, so it is tested by feeding bytes, one at a time too.

llhttp (via httptools) is strict by default, but it calls
``on_headers_complete`` *before* it rejects some framings (a
Transfer-Encoding that is not ``chunked``), accepts ``gzip, chunked`` (which
we cannot re-frame honestly), lets a request without ``Host`` through, takes ``HTTP/0.9`` and ``HTTP/2.0``
as versions, takes ``RTSP/1.0`` and ``ICE/1.0`` request lines as HTTP/1.0, accepts any ``Host`` value, skips bare CRs and LFs before a
request line and buffers an endless header line without bound. This module
adds those checks on top, so that a HEAD event is only ever produced for a
request whose body framing is unambiguous. Each attacker-controlled size has
a named limit.

An absolute-form target (``GET http://shop/p HTTP/1.1``, RFC 9112 3.2.2) is
accepted and turned into origin-form, its authority replacing the Host
header, so that everything downstream sees one form.

llhttp ignores CR and LF between messages and says nothing about where a
message ended, so :meth:`RequestFramer.feed` cuts the bytes at the places a
request can end (after an empty line, or after a Content-Length body) and
checks itself that what lies between two requests is empty CRLF lines only.

Events (``kind`` is one of the module constants):

- ``HEAD, RequestHead``    headers complete and valid; decide now, no body read yet
- ``BODY, bytes``          de-chunked body bytes, in order
- ``END, None``            the request is complete
- ``ERROR, ClientError``   framing failed; nothing after this is parsed
"""

from __future__ import annotations

import re
from typing import Any, Final

import httptools

from shieldwall.http.errors import ClientError

HEAD: Final = 0
BODY: Final = 1
END: Final = 2
ERROR: Final = 3

Event = tuple[int, Any]

# Headers that describe one hop and are never forwarded as received. The
# framing ones (content-length, transfer-encoding) are re-emitted by the proxy
# from the validated framing.
_HOP: Final = 1
_CL: Final = 2
_TE: Final = 3
_HOST: Final = 4
_CONN: Final = 5
_EXPECT: Final = 6
_XFF: Final = 7
_COOKIE: Final = 8
_UA: Final = 9
_REFERER: Final = 10
_UPGRADE: Final = 11
_SPECIAL: Final = {
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"host": _HOST,
    b"connection": _CONN,
    b"keep-alive": _HOP,
    b"proxy-connection": _HOP,
    b"te": _HOP,
    b"trailer": _HOP,
    b"upgrade": _UPGRADE,
    b"expect": _EXPECT,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _HOP,
    b"cookie": _COOKIE,
    b"user-agent": _UA,
    b"referer": _REFERER,
}

_SPECIAL_FIRST: Final = frozenset(k[0] for k in _SPECIAL)

# RFC 9110 4.2.1/7.2 and RFC 3986 3.2.2: uri-host [ ":" port ], no userinfo.
# An empty host is invalid for http(s), so it is refused too (as nginx does).
_AUTHORITY: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+)(?::[0-9]{0,5})?")
_ABSOLUTE: Final = re.compile(rb"[Hh][Tt][Tt][Pp][Ss]?://([^/?#]*)(.*)", re.DOTALL)
_VERSIONS: Final = frozenset({"1.0", "1.1"})
_GOOD_HOSTS: Final[set[bytes]] = set()
"""Host values already found valid (a shop sees a handful): a set lookup
instead of a regex per request. Bounded, so random Hosts cannot grow it."""
_GOOD_HOSTS_MAX: Final = 1024

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def _check_request_line(line: bytes) -> None:
    """A request line naming another protocol (``GET / RTSP/1.0``) is refused;
    lines of other shapes (HTTP/0.9's two words) are llhttp's to judge."""
    parts = line.split(b" ")
    if len(parts) == 3 and not parts[2].startswith(b"HTTP/"):
        proto = parts[2][:16].decode("ascii", "backslashreplace")
        raise ClientError(400, f"not an HTTP request line (protocol {proto!r})")


class RequestHead:
    """Everything known of a request before its body."""

    __slots__ = (
        "chunked", "content_length", "cookie", "expect_continue", "has_body", "headers", "host",
        "keep_alive", "method", "path", "query", "referer", "target", "user_agent",
        "version", "xff",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.path = ""
        self.query = ""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        """Forwardable headers, hop-by-hop and framing headers removed, order kept."""
        self.host = ""
        self.cookie = ""
        self.user_agent = ""
        self.referer = ""
        self.xff = b""
        self.content_length = -1
        """-1 when absent."""
        self.chunked = False
        self.keep_alive = True
        self.expect_continue = False
        self.has_body = False
        """Chunked or a Content-Length above 0 (set when the head is complete)."""

    def again(self, target: bytes, path: str, query: str) -> RequestHead:
        """This head with another origin-form target: what the framer makes of
        a request of the same method and version whose header lines are this
        one's byte for byte (RequestFramer.feed). The header list is shared:
        nothing changes a head's list once it is made."""
        h = RequestHead()
        h.method = self.method
        h.target = target
        h.path = path
        h.query = query
        h.version = self.version
        h.headers = self.headers
        h.host = self.host
        h.cookie = self.cookie
        h.user_agent = self.user_agent
        h.referer = self.referer
        h.xff = self.xff
        h.content_length = self.content_length
        h.keep_alive = self.keep_alive
        h.expect_continue = self.expect_continue
        return h


class FramingLimits:
    """The named limits on what an attacker controls in a request."""

    __slots__ = ("max_body_bytes", "max_header_bytes", "max_headers", "max_request_line")

    def __init__(self, max_request_line: int = 8192, max_header_bytes: int = 16384,
                 max_headers: int = 100, max_body_bytes: int = 10 * 1024 * 1024) -> None:
        self.max_request_line = max_request_line
        """Bytes of the request target: 414 above."""
        self.max_header_bytes = max_header_bytes
        """Bytes of the whole header block (names, values, separators): 431 above."""
        self.max_headers = max_headers
        """Number of header fields: 431 above."""
        self.max_body_bytes = max_body_bytes
        """Declared or streamed body bytes: 413 above."""


_QUICK_METHODS: Final = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS",
                                   b"PATCH"})

QuickHead = tuple[str, str, str, str, str, str, str, str]
"""What :func:`quick_head` finds: method, the request line (as sent:
``METHOD /target HTTP/1.x``), path, query, version, Cookie, User-Agent,
Referer."""


def _named(line: bytes, canon: bytes, name: bytes) -> int:
    """Where the value of header ``line`` starts if its name is ``name``
    (lowercase, compared without case; ``canon``: the name and colon as
    browsers spell them, tried first), past the colon and leading blanks as
    the parser skips them; 0 if it is another header."""
    n = len(name)
    if len(line) <= n or line[n] != 58:  # ':'
        return 0
    if not line.startswith(canon):
        for k in range(n):  # byte by byte: compiled, cheaper than a method call
            c = name[k]
            b = line[k]
            if b != c and (c < 97 or b != c - 32):
                return 0
    k = n + 1
    end = len(line)
    while k < end and (line[k] == 32 or line[k] == 9):
        k += 1
    return k


def quick_head(data: bytes, limits: FramingLimits) -> QuickHead | None:
    """What the guard needs of a request, read from its bytes without the
    framer: for the proxy's early path (shieldwall.proxy.server), which asks
    the guard before the head is parsed and answers a refusal without
    building the request (after :func:`well_formed` says llhttp takes it).

    Only for the plain shape: ``data`` is exactly one whole head (it ends at
    its first empty line), the request line is ``METHOD /target
    HTTP/1.x`` with a common method, at most one Cookie header, one valid
    Host header for HTTP/1.1, at most one for HTTP/1.0. Anything else is
    None: the framer decides as ever. The values are the ones the framer
    gives (leading blanks skipped, trailing ones kept, the last User-Agent
    and Referer), so a request that is let through is decided on the same
    facts (the proxy checks; tests/proxy/test_proxy_early.py compares)."""
    n = len(data)
    if n > limits.max_header_bytes or n < 18 or data[n - 1] != 10 or data[n - 2] != 13 \
            or data[n - 3] != 10 or data[n - 4] != 13:
        return None  # (an empty line before the end is an empty line below: None too)
    lines = data.split(b"\r\n")
    nlines = len(lines) - 2  # the request line and the headers (then b"", b"")
    if nlines - 1 > limits.max_headers:
        return None
    line = lines[0]
    eol = len(line)
    sp1 = 0
    while sp1 < 8 and sp1 < eol and line[sp1] != 32:
        sp1 += 1
    if sp1 == 0 or eol - sp1 < 11:
        return None
    sp2 = eol - 9
    if line[sp2] != 32 or line[sp2 + 1:eol - 1] != b"HTTP/1.":
        return None
    minor = line[eol - 1]
    if minor != 49 and minor != 48:  # 1.1, 1.0
        return None
    if sp1 == 3 and line[0] == 71 and line[1] == 69 and line[2] == 84:  # GET
        method = "GET"
    elif line[:sp1] in _QUICK_METHODS:
        method = line[:sp1].decode("ascii")
    else:
        return None
    if line[sp1 + 1] != 47 or sp2 - sp1 - 1 > limits.max_request_line:  # '/'
        return None
    q = sp1 + 1
    while q < sp2 and line[q] != 63:  # '?'
        q += 1
    request = line.decode("latin-1")
    cookie = agent = referer = ""
    n_cookie = n_host = 0
    for i in range(1, nlines):
        line = lines[i]  # (the request line is done with)
        if not line:
            return None
        c = line[0] | 0x20
        if c == 99:  # c
            k = _named(line, b"Cookie:", b"cookie")
            if k:
                n_cookie += 1
                cookie = line[k:].decode("latin-1")
        elif c == 104:  # h
            k = _named(line, b"Host:", b"host")
            if k:
                n_host += 1
                host = line[k:]
                e = len(host)
                while e > 0 and (host[e - 1] == 32 or host[e - 1] == 9):
                    e -= 1
                if e < len(host):
                    host = host[:e]
                if host not in _GOOD_HOSTS and _AUTHORITY.fullmatch(host) is None:
                    return None
        elif c == 117:  # u
            k = _named(line, b"User-Agent:", b"user-agent")
            if k:
                agent = line[k:].decode("latin-1")
        elif c == 114:  # r
            k = _named(line, b"Referer:", b"referer")
            if k:
                referer = line[k:].decode("latin-1")
    if n_cookie > 1 or n_host > 1 or (minor == 49 and not n_host):
        return None  # (several Cookie headers: the framer joins them)
    if q == sp2:
        path, query = request[sp1 + 1:sp2], ""
    else:
        path, query = request[sp1 + 1:q], request[q + 1:sp2]
    return (method, request, path, query, "1.1" if minor == 49 else "1.0", cookie, agent,
            referer)


_TARGET_OK: Final = bytes(
    1 if chr(c) in ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    "-._~!$&'()*+,;=:@/?%") else 0 for c in range(256))
"""Bytes a target may hold for :func:`request_line`: RFC 3986's unreserved,
sub-delims, ':', '@', '/', '?' and '%' (llhttp takes every printable ASCII
byte but the space; these need no escaping in the access log either)."""


def request_line(data: bytes, end: int, method_sp: str, suffix: str,
                 max_target: int) -> tuple[str, str, str] | None:
    """``data[:end]`` read as a request line ``METHOD /target HTTP/1.x``
    with this method (``method_sp``: it and a space) and version
    (``suffix``: " HTTP/1.x"), its target made only of :data:`_TARGET_OK`
    bytes: (the line, path, query), or None.

    For the proxy's early path: when a connection sends a head whose header
    lines are byte for byte those of a head it already took (quick_head,
    then llhttp), only the request line is new, and such a line changes
    neither what the framer makes of the headers nor llhttp's verdict (it
    takes those targets, the method and version are the same). A randomized
    flood varies the target and repeats its headers."""
    m = len(method_sp)
    start = m
    stop = end - 9
    if stop - start < 1 or stop - start > max_target or data[start] != 47:  # '/'
        return None
    q = -1
    for i in range(start, stop):
        c = data[i]
        if not _TARGET_OK[c]:
            return None
        if c == 63 and q < 0:  # '?'
            q = i
    line = data[:end].decode("latin-1")
    if not line.startswith(method_sp) or not line.endswith(suffix):
        return None
    if q < 0:
        return line, line[start:stop], ""
    return line, line[start:q], line[q + 1:stop]


class _Checker:
    """llhttp with none of the framer's callbacks: only whether a head is
    well-formed (the C parser alone, ~4,000 instructions for a browser's
    head; the framer's per-header callbacks cost several times that)."""

    __slots__ = ("done", "keep", "parser")

    def __init__(self) -> None:
        self.done = False
        self.keep = False
        self.parser = httptools.HttpRequestParser(self)

    def on_headers_complete(self) -> None:
        # (read here: after the message llhttp no longer says)
        self.keep = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.done = True


class _Slot:
    """The process's one checker (a field of a Final object: compiled, no
    module-dict probe per request, as a reassigned global would cost)."""

    __slots__ = ("checker",)

    def __init__(self) -> None:
        self.checker: _Checker | None = None


_CHECKER: Final = _Slot()


def well_formed(data: bytes) -> int:
    """Whether llhttp takes ``data`` (a head from :func:`quick_head`) as
    exactly one complete, valid request: 0 if not (malformed, or a body is
    announced), 1 if it is and the connection closes after it, 2 if it is
    and the connection may be kept (keep-alive, and nothing after the head
    belongs to this request, for llhttp as for the framer). What the early
    path asks before it answers a refusal without the framer, so that a
    malformed request still gets the framer's own 4xx and a refusal never
    leaves a body to be read as a request. One parser per process,
    replaced after an error or a request that closes."""
    slot = _CHECKER
    c = slot.checker
    if c is None:
        c = slot.checker = _Checker()
    c.done = c.keep = False
    try:
        c.parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        slot.checker = None
        return 0
    if not c.done:
        slot.checker = None  # mid-message: a body is announced
        return 0
    if not c.keep:
        slot.checker = None  # closed after this request
        return 1
    return 2


class _Inert:
    """A protocol with no callbacks, for the parser a closed framer holds."""


_CLOSED_PARSER: Final = httptools.HttpRequestParser(_Inert())
"""What RequestFramer.close leaves in place of the framer's own parser."""


class RequestFramer:
    """Feeds bytes to llhttp and turns its callbacks into validated events."""

    __slots__ = (
        "_again", "_block", "_body_bytes", "_cl_left", "_conn_tokens", "_events", "_failed",
        "_gap_cr", "_head", "_hsize", "_idle", "_in_head", "_method_sp", "_n_cl", "_n_host",
        "_nheaders", "_origin", "_parser", "_pending", "_raised", "_rl", "_suffix", "_tail", "_te",
        "_url", "_version", "limits",
    )

    def __init__(self, limits: FramingLimits) -> None:
        self.limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._failed = False
        self._in_head = False
        self._pending = 0
        self._raised: ClientError | None = None
        self._idle = True
        """No request begun since the last one ended: only empty lines may come."""
        self._gap_cr = False
        """The bytes between requests ended in a CR that still needs its LF."""
        self._cl_left = 0
        """Content-Length body bytes still to come (where this request ends)."""
        self._tail = b""
        """Last bytes of the previous feed inside a request, for an empty line cut in two."""
        self._again: RequestHead | None = None
        """The last head llhttp read here that came whole in one read, origin-form,
        bodiless and kept alive; ``_block``: its bytes from the end of its request
        line on. A head whose bytes after its request line are ``_block`` and
        whose request line is plain (request_line: this method and version, a
        target of ordinary bytes) is that head with a new target: llhttp and the
        framer's per-header callbacks would find the same (the header lines are
        the same bytes, and such a line changes neither llhttp's verdict nor the
        framing), so neither runs (~20,000 instructions a request, by callgrind).
        A browser's or a tool's requests on one connection mostly repeat their
        header lines."""
        self._block = b""
        self._method_sp = ""
        self._suffix = ""
        self._origin = False
        """The head being read had an origin-form target (on_headers_complete)."""
        self._version = ""
        """The request's HTTP version read from its request line by feed's
        common case ("" when not: llhttp is asked)."""
        self._rl: bytes | None = None
        """The current request line so far, while its end has not been read
        (None once it is checked): llhttp does not say which protocol it named."""
        self._reset_head()

    def _reject(self, status: int, reason: str) -> ClientError:
        self._raised = ClientError(status, reason)
        return self._raised

    def _reset_head(self) -> None:
        self._head = RequestHead()
        self._url = b""
        self._hsize = 0
        self._nheaders = 0
        self._te: list[bytes] = []
        self._conn_tokens = b""
        self._n_cl = 0
        self._n_host = 0
        self._body_bytes = 0

    @property
    def failed(self) -> bool:
        return self._failed

    def close(self) -> None:
        """Let go of llhttp: its parser holds the framer's bound callbacks, a
        reference cycle that left every closed connection's framer and
        parser to the cyclic collector (a young collection at 1,000
        connections walked them all). Without the cycle both are freed when
        the connection is. A closed framer takes no more input (``feed``
        gives no events, as after an error)."""
        self._failed = True
        self._events = []
        self._again = None
        self._parser = _CLOSED_PARSER

    def resting(self) -> bool:
        """Between requests with nothing pending: the next bytes begin a request."""
        return self._idle and not self._gap_cr and not self._failed

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes. After an ERROR event
        the framer refuses further input (the connection must close)."""
        if self._failed:
            return []
        events = self._events = []
        try:
            # The common case first: between requests, no empty line, one
            # whole head (no body, or a body still to come) in this read.
            again = self._again
            if again is not None and self._idle and not self._gap_cr \
                    and data.endswith(self._block):
                # The last head's field lines after a new request line. The
                # line request_line takes holds no CR or LF, so the block's
                # first CRLF ends it and its empty line (the block's only one)
                # ends the head: no search for either.
                m = self._method_sp
                eol = len(data) - len(self._block)
                line = request_line(data, eol, m, self._suffix, self.limits.max_request_line)
                if line is not None:
                    events.append((HEAD, again.again(data[len(m):eol - 9], line[1], line[2])))
                    events.append((END, None))
                    return events
            if self._idle and not self._gap_cr and data.find(b"\r\n\r\n") == len(data) - 4 \
                    and 13 != data[0] != 10:
                eol = data.find(b"\r\n")
                sp = data.rfind(b" ", 0, eol)
                if not data.startswith(b"HTTP/", sp + 1):
                    _check_request_line(data[:eol])
                elif eol - sp == 9 and data.startswith(b"HTTP/1.", sp + 1) \
                        and data.find(b"\n") == eol + 1:
                    # The version as the request line spells it, for
                    # on_headers_complete: httptools' get_http_version builds
                    # it with str.format, ~2,300 instructions a request. (The
                    # first LF ends this line: no bare-LF line before it.)
                    minor = data[eol - 1]
                    self._version = "1.1" if minor == 49 else "1.0" if minor == 48 else ""
                self._parser.feed_data(data)
                self._version = ""
                if len(events) == 2 and self._idle and self._origin and events[1][0] == END:
                    head: RequestHead = events[0][1]
                    if head.keep_alive and not head.has_body:
                        self._again = head
                        self._block = data[eol:]
                        self._method_sp = head.method + " "
                        self._suffix = " HTTP/" + head.version
                if not self._idle and not self._cl_left:
                    self._tail = data[-3:]
            else:
                self._feed(data)
        except ClientError as err:
            self._fail(err)
        except httptools.HttpParserUpgrade:
            self._fail(self._raised or ClientError(501, "protocol upgrade is not supported"))
        except httptools.HttpParserError as exc:
            # Our own checks raise inside callbacks; llhttp reports them as a
            # callback/user error, so the ClientError is kept on the side.
            self._fail(self._raised or ClientError(400, f"bad request: {exc}"))
        else:
            if self._in_head:
                # llhttp buffers a header line without bound until it ends:
                # count what we fed while the head is incomplete.
                self._pending += len(data)
                if self._pending > self.limits.max_request_line + self.limits.max_header_bytes:
                    self._fail(ClientError(431, "request header block too large"))
        return events

    def _feed(self, data: bytes) -> None:
        # Cut ``data`` where a request can end, so that the bytes after it are
        # known and checked. A request ends after an empty line (no body, or
        # the last chunk and trailers; that empty line never follows another)
        # or after its Content-Length body.
        n = len(data)
        pos = 0
        parser = self._parser
        while True:
            if self._idle:
                pos = self._skip_empty_lines(data, pos)
                if pos >= n:
                    return
                self._rl = b""
            cl_left = self._cl_left
            if cl_left:
                end = pos + cl_left
                if end > n:
                    end = n
                self._cl_left = cl_left - (end - pos)
            else:
                end = -1
                tail = self._tail
                if tail and pos == 0:
                    k = (tail + data[:3]).find(b"\r\n\r\n")
                    if k >= 0:
                        end = k + 4 - len(tail)
                if end < 0:
                    end = data.find(b"\r\n\r\n", pos)
                    end = n if end < 0 else end + 4
            if self._rl is not None:
                eol = data.find(b"\n", pos, end)
                if eol < 0:
                    if len(self._rl) <= self.limits.max_request_line + 64:
                        self._rl += data[pos:end]
                else:
                    line = self._rl + data[pos:eol]
                    self._rl = None
                    _check_request_line(line[:-1] if line.endswith(b"\r") else line)
            parser.feed_data(data if pos == 0 and end == n else data[pos:end])
            if end == n:
                break
            pos = end
        if self._idle or self._cl_left:
            self._tail = b""
        else:
            self._tail = (self._tail + data)[-3:] if n < 3 else data[-3:]

    def _skip_empty_lines(self, data: bytes, pos: int) -> int:
        """Skip the empty CRLF lines before a request line (RFC 9112 2.2 lets
        a server ignore them); a bare CR or LF there is refused."""
        n = len(data)
        cr = self._gap_cr
        while pos < n:
            b = data[pos]
            if cr:
                if b != 10:
                    raise ClientError(400, "bare CR before the request line")
                cr = False
            elif b == 13:
                cr = True
            elif b == 10:
                raise ClientError(400, "bare LF before the request line")
            else:
                break
            pos += 1
        self._gap_cr = cr
        return pos

    def _fail(self, err: ClientError) -> None:
        self._failed = True
        self._events.append((ERROR, err))

    # -- llhttp callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._idle = False
        self._pending = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise self._reject(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._hsize += len(name) + len(value) + 4
        self._nheaders += 1
        if self._hsize > self.limits.max_header_bytes or self._nheaders > self.limits.max_headers:
            raise self._reject(431, "request header fields too large")
        head = self._head
        # Most names cannot be special; skip lower() for those (hot path).
        kind = _SPECIAL.get(name.lower()) if (name[0] | 0x20) in _SPECIAL_FIRST else None
        if kind is None:
            head.headers.append((name, value))
        elif kind == _HOST:
            self._n_host += 1
            if value not in _GOOD_HOSTS:
                value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace
                if _AUTHORITY.fullmatch(value) is None:
                    raise self._reject(400, "invalid Host header")
                if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX:
                    _GOOD_HOSTS.add(value)
            head.host = value.decode("latin-1")
            head.headers.append((name, value))
        elif kind == _COOKIE:
            v = value.decode("latin-1")
            head.cookie = f"{head.cookie}; {v}" if head.cookie else v
            head.headers.append((name, value))
        elif kind == _UA:
            head.user_agent = value.decode("latin-1")
            head.headers.append((name, value))
        elif kind == _REFERER:
            head.referer = value.decode("latin-1")
            head.headers.append((name, value))
        elif kind == _CL:
            self._n_cl += 1
            if self._n_cl > 1 or not value.isdigit() or len(value) > 18:
                raise self._reject(400, "invalid or repeated Content-Length")
            head.content_length = int(value)
        elif kind == _TE:
            self._te.append(value)
        elif kind == _XFF:
            head.xff = value if not head.xff else head.xff + b", " + value
        elif kind == _CONN:
            self._conn_tokens += b"," + value.lower()
        elif kind == _EXPECT and value.strip().lower() == b"100-continue":
            head.expect_continue = True
        # _HOP, _UPGRADE: dropped

    def on_headers_complete(self) -> None:
        head = self._head
        parser = self._parser
        self._in_head = False
        head.method = parser.get_method().decode("ascii")
        version = self._version or parser.get_http_version()
        head.version = version
        if version not in _VERSIONS:
            raise self._reject(505, f"HTTP/{version} is not supported")
        head.keep_alive = parser.should_keep_alive()
        url = self._url
        if parser.should_upgrade():
            raise self._reject(501, "protocol upgrade is not supported")
        if self._te:
            if len(self._te) != 1 or self._te[0].strip().lower() != b"chunked":
                raise self._reject(400, "Transfer-Encoding other than a single final chunked")
            if head.content_length >= 0:
                raise self._reject(400, "both Content-Length and Transfer-Encoding")
            head.chunked = True
        elif head.content_length > 0:
            self._cl_left = head.content_length
        head.has_body = head.chunked or head.content_length > 0
        if head.content_length > self.limits.max_body_bytes:
            raise self._reject(413, "request body too large")
        if self._n_host != 1 and (self._n_host > 1 or head.version == "1.1"):
            raise self._reject(400, "exactly one Host header is required")
        if head.method == "CONNECT":
            raise self._reject(405, "CONNECT is not supported")
        self._origin = url[:1] == b"/"
        if not self._origin and not (url == b"*" and head.method == "OPTIONS"):
            url = self._absolute_form(url, head)
        head.target = url
        q = url.find(b"?")
        if q < 0:
            head.path = url.decode("latin-1")
        else:
            head.path = url[:q].decode("latin-1")
            head.query = url[q + 1:].decode("latin-1")
        if self._conn_tokens and self._conn_tokens != b",keep-alive" and self._conn_tokens != b",close":
            # Headers named in Connection are hop-by-hop too.
            named = {t.strip() for t in self._conn_tokens.split(b",")}
            head.headers = [(n, v) for n, v in head.headers if n.lower() not in named]
        self._events.append((HEAD, head))

    def _absolute_form(self, url: bytes, head: RequestHead) -> bytes:
        """The origin-form of an absolute-form target; its authority becomes
        the Host (RFC 9112 3.2.2: a received Host is replaced, not forwarded)."""
        m = _ABSOLUTE.fullmatch(url)
        if m is None:
            raise self._reject(400, "request target is neither origin-form nor an http(s) URI")
        authority, rest = m.group(1), m.group(2)
        if _AUTHORITY.fullmatch(authority) is None:
            raise self._reject(400, "invalid authority in the request target")
        head.host = authority.decode("latin-1")
        headers = [(n, v) for n, v in head.headers if n.lower() != b"host"]
        headers.insert(0, (b"Host", authority))
        head.headers = headers
        return rest if rest[:1] == b"/" else b"/" + rest

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            raise self._reject(413, "request body too large")
        self._events.append((BODY, body))

    def on_message_complete(self) -> None:
        self._events.append((END, None))
        self._idle = True
        self._reset_head()
