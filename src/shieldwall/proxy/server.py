"""The client side of the data path: one asyncio Protocol per connection.

Reading order for one request: ``data_received`` feeds the sans-IO framer
(shieldwall.http.framing) and walks its events. HEAD -> facts -> gate; an
enforced decision is answered from its prebuilt bytes, anything else picks a
backend (balancer), takes a kept-alive connection (pool) or opens one, and
streams the body up; the upstream connection calls back ``upstream_head`` /
``upstream_body`` / ``upstream_end`` / ``upstream_failed``, and the response
streams down. ``_finish`` writes the access log line, the event and the
metrics, then readies the connection for the next request.

No task is created on the fast path (pooled connection, open admission):
the whole exchange is callbacks. Timeouts are deadlines checked by the
worker's sweeper (one timer for all connections), not one timer each.
Flow control: a full upstream write buffer pauses reading from the client
and a full client write buffer pauses reading from the upstream.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, cast

from shieldwall.detect.events import EventSink, Outcome, RequestEvent
from shieldwall.guard._admission import PriorityAdmission
from shieldwall.guard._gate import GuardGate
from shieldwall.guard._net import Identity
from shieldwall.guard.decision import (
    ALLOW_ALL,
    Action,
    Admission,
    ClientClass,
    Decision,
    Gate,
    Mode,
    OpenGate,
    RequestFacts,
)
from shieldwall.http.errors import UPSTREAM_FAILURES, ClientError, error_response, shed_response
from shieldwall.http.framing import (
    BODY,
    END,
    ERROR,
    HEAD,
    Event,
    FramingLimits,
    RequestFramer,
    RequestHead,
    quick_head,
    request_line,
    well_formed,
)
from shieldwall.metrics import Metrics, Tally
from shieldwall.proxy import upstream as up_mod
from shieldwall.proxy.accesslog import AccessLog, is_plain
from shieldwall.proxy.balancer import BackendState, Balancer, should_retry
from shieldwall.proxy.cache import StaleCache, cacheable
from shieldwall.proxy.upstream import Pools, UpstreamConnection
from shieldwall.rowfeed import LiveRow, RowFeed

if TYPE_CHECKING:
    from shieldwall.detect.windows import Row
    from shieldwall.proxy.worker import Worker

# connection states
IDLE: Final = 0
"""Between requests (or before the first): idle / header deadline."""
READING_HEAD: Final = 1
READING_BODY: Final = 2
WAITING: Final = 3
"""Request sent; waiting for (or receiving) the response."""
CLOSED: Final = 4
LINGER: Final = 5
"""Answered and closing: our side is shut for writing, input is read and
dropped for a moment so the client gets the response instead of a reset."""
_LINGER_SECONDS: Final = 1.0

# reasons to pause reading from the client (a bit set)
P_UPSTREAM_FULL: Final = 1
P_CONNECTING: Final = 2
P_BACKLOG: Final = 4

_INF: Final = float("inf")
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE: Final = b"Connection: close\r\n"
_KEEP: Final = b"Connection: keep-alive\r\n"
_CHUNKED: Final = b"Transfer-Encoding: chunked\r\n"
_CHUNK_END: Final = b"0\r\n\r\n"
_SAFE_FOR_STALE: Final = frozenset({"GET", "HEAD"})
_METHOD_SP: Final = {m: m.encode() + b" " for m in ("GET", "HEAD", "POST", "PUT", "DELETE",
                                                    "OPTIONS", "PATCH")}
"""Request lines' starts as sent upstream (no encode() call per request)."""
_ALLOW: Final = Action.ALLOW
# Enum properties cost a descriptor call each; the log needs plain strings.
_ACTION: Final = {a: a.value for a in Action}
_CLASS: Final = {c: c.label for c in ClientClass}
_OUTCOME: Final = {o: o.value for o in Outcome}
# Final: compiled, a module constant is a C static, not a probe of the
# module's dict (and an enum member not an attribute lookup) on every use.
_ACTION_INDEX: Final = {a: i for i, a in enumerate(Action)}
_TAILS: Final[dict[int, str]] = {}
"""The ends of refusals' access-log lines (AccessLog.answered_tail), by
action, class, session and verified as one int."""
_O_UNKNOWN: Final = Outcome.UNKNOWN
_O_SHIELD: Final = Outcome.SHIELD
_O_OK: Final = Outcome.OK
_VERIFIED: Final = ClientClass.VERIFIED
_wall_clock: Final = time.time
_NORMAL_MODE: Final = Mode.NORMAL


@lru_cache(maxsize=4096)
def _peer_bytes(peer: str) -> bytes:
    """The address as sent in X-Forwarded-For: encoded when first forwarded,
    not kept on every (possibly idle) connection."""
    return peer.encode()


class Deadlines:
    """The timeouts a connection reads on every request, as native floats
    (copied from the config's ``[timeouts]`` by Worker.apply)."""

    def __init__(self) -> None:
        self.header = 10.0
        self.idle = 60.0
        self.min_body_rate = 1024.0
        self.body_grace = 5.0
        self.send = 30.0
        self.upstream_response = 30.0


class ConnLimits:
    """The connection caps (copied from the config's ``[limits]``)."""

    def __init__(self) -> None:
        self.max_connections = 10000
        self.max_connections_per_client = 256


class Shared:
    """A worker's state that its connections read on every request.

    Compiled, a field of this object is a load; an attribute of the
    interpreted :class:`~shieldwall.proxy.worker.Worker` was a dictionary
    lookup, ~300-500 instructions each, and a request made 20-40 of them.
    The worker owns one (``worker.hot``) and keeps it current: it sets the
    fields at start and in ``apply``, and its own attributes of the same
    names are properties over these. The rare calls (logging a refusal,
    spawning a task) go on to the worker."""

    def __init__(self, worker: Worker, loop: asyncio.AbstractEventLoop, metrics: Metrics,
                 balancer: Balancer, pool: Pools, access_log: AccessLog) -> None:
        self.worker = worker
        self.loop = loop
        self.metrics = metrics
        self.balancer = balancer
        self.pool = pool
        self.access_log = access_log
        self.timeouts = Deadlines()
        self.limits = ConnLimits()
        self.framing_limits = FramingLimits()
        self.conns: set[ClientConnection] = set()
        self.per_client: dict[str, int] = {}
        self.draining = False
        self.cache: StaleCache | None = None
        self.retry = True
        self._gate: Gate = OpenGate()
        self.guard: GuardGate | None = None
        """The gate when it is the guard's own (set with ``gate``): compiled,
        its methods are called natively, not looked up as Python methods."""
        self.observe = False
        self._admission: Admission | None = None
        self.priority: PriorityAdmission | None = None
        """The admission when it is the guard's own (set with ``admission``):
        called natively, as ``guard``."""
        self.sinks: list[EventSink] = []
        self.row_sinks: list[Callable[[Row], None]] = []
        self.feed: RowFeed | None = None
        self.feed_rows: list[LiveRow] | None = None
        self.feed_cap = 0
        self.early: Callable[[str], bool] | None = None
        """The gate's ``early_wanted`` (the guard's): whether to decide on a
        request of this address from its first bytes (ClientConnection._early)."""
        self.h_bytes = b""
        self.h_len = -1
        self.h_fields = b""
        self.h_status = b""
        """The last response head of the plain shape sent (upstream_head), and
        the status line, fields and length it was made of: a pure function
        of those, so the worker's, not a connection's (a shopper's connection
        asks too seldom for its own last head to be of this second: the
        fields, Date among them, come from one shared FieldCut a second)."""

    @property
    def gate(self) -> Gate:
        return self._gate

    @gate.setter
    def gate(self, gate: Gate) -> None:
        self._gate = gate
        self.guard = gate if isinstance(gate, GuardGate) else None

    @property
    def admission(self) -> Admission | None:
        return self._admission

    @admission.setter
    def admission(self, admission: Admission | None) -> None:
        self._admission = admission
        self.priority = admission if isinstance(admission, PriorityAdmission) else None

    def reject_log(self, kind: str, detail: str) -> None:
        self.worker.reject_log(kind, detail)

    def refuse(self, transport: asyncio.Transport, reason: str, status: int, client: str) -> None:
        self.worker.refuse(transport, reason, status, client)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.worker.spawn(coro)

    def is_trusted(self, addr: str) -> bool:
        return self.worker.is_trusted(addr)

    def is_ip(self, addr: str) -> bool:
        return self.worker.is_ip(addr)


_MEMO_MAX: Final = 512
"""Heads up to this size are remembered by a connection that refused them
(_Memo): a flood's requests are a few hundred bytes; 10,000 connections then
hold at most ~10 MB of them."""
_MEMO_FRESH: Final = 10.0
"""Seconds after a refusal on a connection during which its next requests
try the early path without asking the guard (early_wanted keeps an address
that long too)."""


class _Memo:
    """A request refused from its first bytes, as read then (see
    ClientConnection._early): when the connection sends the very same bytes
    again, quick_head and llhttp would find the same, so neither runs; the
    guard still decides anew."""

    __slots__ = ("after", "data", "decision", "facts", "fields_plain", "form", "limits",
                 "method_sp", "outcome", "plain", "request", "rest", "rest_for", "row_c",
                 "row_d", "session", "suffix", "tail", "tally", "until", "verified", "version")

    def __init__(self, data: bytes, limits: FramingLimits, facts: RequestFacts, request: str,
                 version: str, form: int) -> None:
        self.data = data
        self.limits = limits
        """The limits it was read under (a reload may change them)."""
        self.facts = facts
        self.request = request
        self.version = version
        self.form = form
        self.tail = data[len(request):]
        """The head after its request line (from the line's CRLF): a head that
        ends with these bytes and starts with a plain request line of the
        same method and version is read from its request line alone
        (shieldwall.http.framing.request_line)."""
        self.method_sp = facts.method + " "
        self.suffix = " HTTP/" + version
        self.fields_plain = is_plain(facts.referer + facts.user_agent)
        """Referer and User-Agent need no escaping in the access log."""
        self.plain = self.fields_plain and is_plain(request)
        self.until = 0.0
        """The loop time until which this connection tries the early path
        without asking the guard (_MEMO_FRESH after its last refusal)."""
        # What the last refusal logged (ClientConnection._log_refused), kept
        # while the decision is the same object (a limit's 429 for a whole
        # second, a challenge page for its half second):
        self.decision: Decision | None = None
        self.after = ""
        """The access-log line after its request line (status, bytes, referer,
        agent, rt, tail)."""
        self.rest = ""
        self.rest_for = ""
        """The line after its head (``"`` request ``after``), for request line ``rest_for``."""
        self.tally: Tally | None = None
        self.outcome = ""
        self.row_d = ""
        self.row_c = ""
        self.session = False
        self.verified = False


class ClientConnection(asyncio.Protocol):
    # Slots: an idle connection must cost little (10,000 of them in < 60 MB).
    __slots__ = (
        "acquired", "attempt", "attempt_start", "backend", "backlog", "body_deadline_base",
        "body_received", "bytes_sent", "cache_headers", "cache_parts", "cache_reason",
        "cache_size", "closing", "deadline", "decision", "discard", "early_gen", "facts", "framer",
        "fresh_host", "fresh_target", "fresh_until", "fwd_fields", "fwd_tail",
        "head", "ident", "ident_gen", "last_facts", "len_line", "len_n", "log_c", "log_d",
        "log_decision", "log_o", "log_outcome", "memo", "out_chunked", "outcome", "pause_bits", "peer", "pending", "req_done", "requests",
        "resp_started", "sent", "skip_to_end", "start", "state", "status", "tls", "transport",
        "trusted", "up", "up_head", "up_key", "up_status", "up_time", "w", "wall", "wbuf",
        "write_paused", "write_paused_at",
    )

    def __init__(self, worker: Worker, tls: bool, peer: str | None = None) -> None:
        self.w = worker.hot
        self.tls = tls
        self.framer: RequestFramer | None = None
        """Created on the first byte: a connection that sends nothing costs no parser."""
        self.transport: asyncio.Transport | None = None
        self.peer = "-" if peer is None else sys.intern(peer)
        """The client's address. From ``accept()`` when the accept loop knows it
        (asking the transport would build and keep a socket-like object per
        connection); interned, so a thousand connections from one address
        share one string."""
        self.trusted = False
        self.ident: Identity | None = None
        """The guard's :meth:`~GuardGate.identity` of ``peer``, asked at the first
        request that is decided (a trusted proxy's clients come per request)."""
        self.ident_gen = -1
        self.early_gen = -1
        """The guard's ``refusing_gen`` when its early_wanted said False here."""
        self.state = IDLE
        self.deadline = _INF
        self.pause_bits = 0
        self.write_paused = False
        self.write_paused_at = 0.0
        self.backlog: list[Event] | None = None
        self.body_deadline_base = 0.0
        self.body_received = 0
        self.requests = 0
        self.skip_to_end = False
        """A request was answered before its END event: drop its remaining events."""
        self.memo: _Memo | None = None
        """The last request refused from its first bytes on this connection (_early)."""
        self.fwd_fields: list[tuple[bytes, bytes]] | None = None
        self.fwd_tail = b""
        """The last bodiless request forwarded from here: its header fields and
        what followed its target upstream (_build_upstream_head)."""
        self.len_n = -1
        self.len_line = b""
        """The Content-Length line last sent on this connection, and its length."""
        self.facts: RequestFacts | None = None
        self.last_facts: RequestFacts | None = None
        """The facts of the last request decided here, for the next one if it
        repeats it (_on_head)."""
        self.log_decision: Decision | None = None
        self.log_d = ""
        self.log_c = ""
        """The access log's labels of the last decision logged here (_log_row)."""
        self.log_o = _O_UNKNOWN
        self.log_outcome = _OUTCOME[_O_UNKNOWN]
        """The last outcome logged here and its plain text (_log_row)."""
        self.fresh_until = 0.0
        self.fresh_target = b""
        self.fresh_host = ""
        """The stale cache holds a copy of this URL (host, target) younger than
        its refresh until this wall time (upstream_head)."""
        self._clear()

    def _clear(self) -> None:
        self.head: RequestHead | None = None
        self.last_facts = self.facts
        self.facts = None
        self.decision: Decision | None = None
        self.req_done = False
        self.discard = False
        self.up: UpstreamConnection | None = None
        self.backend: BackendState | None = None
        self.attempt = 0
        self.sent = False
        self.pending: list[bytes] | None = None
        self.up_head = b""
        self.resp_started = False
        self.out_chunked = False
        self.closing = False
        self.status = 0
        self.bytes_sent = 0
        self.up_status = 0
        self.up_time = -1.0
        self.attempt_start = 0.0
        self.outcome = _O_UNKNOWN
        self.cache_parts: list[bytes] | None = None
        self.cache_size = 0
        self.cache_headers: Sequence[tuple[bytes, bytes]] = ()
        """A tuple until a response is cached: no list per idle connection."""
        self.cache_reason = b""
        self.acquired: str | None = None
        self.start = 0.0
        self.wall = 0.0
        self.up_key = ""
        self.wbuf: list[bytes] | None = None
        """Response bytes held until the end of the current upstream read, so a
        small response leaves in one write (one syscall) instead of two."""

    # -- connection lifecycle ----------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        parked = self.transport
        if parked is not None:
            # A parked connection (shieldwall.proxy.worker.Parking) sent its
            # first bytes: already counted in; the real transport takes over.
            self.transport = transport
            unsent = parked.get_extra_info("unsent")
            if unsent:  # an answer given on the parked socket that it did not take whole
                transport.write(unsent)
            if parked.is_closing():  # closed while this transport was being made
                transport.close()
            return
        self.transport = transport
        w = self.w
        if self.peer == "-":
            peer = transport.get_extra_info("peername")
            self.peer = sys.intern(peer[0]) if isinstance(peer, tuple) else "-"
        w.metrics.connections_total += 1
        if len(w.conns) >= w.limits.max_connections:
            w.refuse(transport, "max_connections", 503, self.peer)
            self.state = CLOSED
            return
        n = w.per_client.get(self.peer, 0)
        if n >= w.limits.max_connections_per_client:
            w.refuse(transport, "max_connections_per_client", 429, self.peer)
            self.state = CLOSED
            return
        w.per_client[self.peer] = n + 1
        w.conns.add(self)
        self.trusted = w.is_trusted(self.peer)
        self.deadline = w.loop.time() + w.timeouts.header

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == CLOSED and self not in self.w.conns:
            return
        self.state = CLOSED
        w = self.w
        if self in w.conns:
            w.conns.discard(self)
            n = w.per_client.get(self.peer, 1) - 1
            if n <= 0:
                w.per_client.pop(self.peer, None)
            else:
                w.per_client[self.peer] = n
        up = self.up
        if up is not None:
            self.up = None
            up.abort()
        # The client left: not the backend's fault, so not counted against it.
        self._release_backend(ok=True)
        if self.head is not None and self.status == 0:
            self.status = 499
            self.outcome = _O_UNKNOWN if self.outcome is _O_UNKNOWN else self.outcome
            self._log_and_count()
        elif self.head is not None and self.resp_started:
            self._log_and_count()
        self._clear()
        framer = self.framer
        if framer is not None:  # (the framer <-> llhttp cycle: see RequestFramer.close)
            self.framer = None
            framer.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        now = self.w.loop.time()
        self.write_paused_at = now
        self.deadline = min(self.deadline, now + self.w.timeouts.send)
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.resume_reading()
        now = self.w.loop.time()
        if self.state == WAITING:
            self.deadline = now + self.w.timeouts.upstream_response
        elif self.state == IDLE:
            self.deadline = now + self.w.timeouts.idle

    def _pause(self, bit: int) -> None:
        if not self.pause_bits and self.transport is not None:
            self.transport.pause_reading()
        self.pause_bits |= bit

    def _resume(self, bit: int) -> None:
        if not self.pause_bits & bit:
            return
        self.pause_bits &= ~bit
        if not self.pause_bits and self.transport is not None and self.state < CLOSED:
            self.transport.resume_reading()
            if self.state == READING_BODY:
                # Time we held the body back is not the client's slowness.
                self.body_deadline_base = self.w.loop.time()
                self.body_received = 0
                self.deadline = self.body_deadline_base + self.w.timeouts.body_grace

    def upstream_pause(self) -> None:
        self._pause(P_UPSTREAM_FULL)

    def upstream_resume(self) -> None:
        self._resume(P_UPSTREAM_FULL)

    # -- deadlines (called by the worker's sweeper) --------------------------
    def on_deadline(self, now: float) -> None:
        w = self.w
        t = self.transport
        if t is None or self.state == CLOSED:
            return
        if self.state == LINGER:
            self.state = CLOSED
            t.abort()
            return
        if self.write_paused and now - self.write_paused_at >= w.timeouts.send:
            w.reject_log("slow_read", self.peer)
            self._abort()
            return
        state = self.state
        if state == IDLE:
            # Nothing started: an idle keep-alive connection, or a client that
            # connected and never sent a byte.
            self.state = CLOSED
            t.close()
        elif state == READING_HEAD:
            w.reject_log("header_timeout", self.peer)
            self._client_error(ClientError(408, "request header timeout"))
        elif state == READING_BODY:
            w.reject_log("body_rate", self.peer)
            up = self.up
            if up is not None:
                self.up = None
                up.abort()
                self._release_backend(ok=True)
            self._client_error(ClientError(408, "request body too slow"))
        elif state == WAITING:
            up = self.up
            if up is not None:
                self.up = None
                up.abort()
                self.upstream_failed(up, up_mod.TIMEOUT)
            else:
                self.deadline = _INF

    def _abort(self) -> None:
        up = self.up
        if up is not None:
            self.up = None
            up.abort()
            self._release_backend(ok=True)
        if self.transport is not None:
            self.transport.abort()

    # -- request side --------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state >= CLOSED:
            return
        now = -1.0
        if self.state == IDLE:
            self.state = READING_HEAD
            if self.requests:
                now = self.w.loop.time()
                self.deadline = now + self.w.timeouts.header
        framer = self.framer
        if framer is None:
            if data[:6] == b"PROXY " or data[:5] == b"\r\n\r\n\x00":
                # A PROXY protocol header from a peer not in proxy_protocol_from
                # (those are read in the accept loop): never trusted.
                self.w.metrics.reject("proxy_protocol")
                self.w.reject_log("proxy_protocol", f"{self.peer}: header from a peer not in "
                                  "proxy_protocol_from; connection closed")
                self._abort()
                return
            framer = self.framer = RequestFramer(self.w.framing_limits)
        w = self.w
        guard = w.guard
        early = w.early
        memo = self.memo
        if ((guard is not None or early is not None) and self.head is None
                and self.decision is None and self.backlog is None and not self.skip_to_end and not self.trusted
                and framer.resting()
                and ((memo is not None and 0.0 <= now < memo.until)  # refused here lately
                     or (self._early_wanted(guard) if guard is not None
                         else early is not None and early(self.peer)))
                and self._early(data, now)):
            return
        events = framer.feed(data)
        if self.backlog is not None:
            self.backlog.extend(events)
            return
        if events:
            self._process(events, 0, now)
        if self.state == READING_BODY and self.pause_bits == 0:
            self._body_progress(len(data))

    def peek_wanted(self) -> bool:
        """Whether this connection, not given its transport yet (parked:
        shieldwall.proxy.worker.Parking), should have its first request
        peeked from the socket and answered there (answer_peeked): its
        address was refused lately. A shopper's connection is never peeked."""
        guard = self.w.guard
        return (guard is not None and not self.requests and self.state == IDLE
                and self.decision is None and not self.trusted and self.framer is None
                and guard.refusing(self.peer))

    def answer_peeked(self, data: bytes) -> bool:
        """The first request of a parked connection, as peeked from its socket
        (``data``, still unread there), refused by the early path: answered
        on the bare socket (the parked transport's ``write`` takes the peeked
        bytes off the socket, then sends). A flood tool that reconnects for
        every request (issue 10: connection-per-request) then costs accept,
        two recv, one send and a close, and no uvloop transport (~35
        syscalls and 56 us a refusal with one, bench/guard.py). True when
        answered (closed, or kept alive: its transport is made next, and
        reads what follows). Else nothing is consumed; a decision the guard
        made (an allowed request) is kept for the head, not made again."""
        if not self.peek_wanted():
            return False
        self.state = READING_HEAD
        if self._early(data, -1.0):
            return True  # (_after set the state: IDLE, or CLOSED)
        self.state = IDLE
        return False

    def _early(self, data: bytes, now: float) -> bool:
        """Decide on a request from its first bytes (issue 10: cheap refusal).

        When ``data`` is one whole head of the plain shape
        (shieldwall.http.framing.quick_head), the guard decides on the
        request line, the address and the Cookie header before the head is
        parsed. A refusal is answered at once from the decision's prebuilt
        bytes: no parser run, no RequestHead, no header list. Anything else
        (and every request the guard lets through) is parsed as ever, and
        an allowed decision is kept for ``_on_head``, so the guard decides
        once. True when the request was answered here. ``now``: the loop's
        time if the caller has it (else < 0)."""
        w = self.w
        memo = self.memo
        limits = w.framing_limits
        line: tuple[str, str, str] | None = None
        if memo is not None and memo.limits is limits and memo.data != data \
                and len(data) <= limits.max_header_bytes and data.endswith(memo.tail):
            line = request_line(data, len(data) - len(memo.tail), memo.method_sp, memo.suffix,
                                limits.max_request_line)
        if memo is not None and line is not None:
            # the header lines of the last request refused here, a new request
            # line (a randomized flood): its fields, the rest as read then
            last = memo.facts
            request = line[0]
            facts = RequestFacts(self.peer, last.method, line[1], line[2], "", last.user_agent,
                                 last.referer, last.cookie, self.tls)
            version = memo.version
            form = memo.form
            plain = memo.fields_plain  # (request_line's alphabet needs no escaping)
        elif memo is not None and memo.limits is limits and memo.data == data:
            # the same bytes as the last request refused here (a flood's
            # tools repeat one request): the same facts, and llhttp's verdict
            facts = memo.facts
            request = memo.request
            version = memo.version
            form = memo.form
            plain = memo.plain
        else:
            q = quick_head(data, w.framing_limits)
            if q is None:
                return False
            method, request, path, query, version, cookie, agent, referer = q
            facts = RequestFacts(self.peer, method, path, query, "", agent, referer, cookie,
                                 self.tls)
            form = -1
            plain = False
            memo = None
        guard = w.guard
        wall = _wall_clock()  # (the gate's "now" and, refused, the log's time)
        try:
            if guard is not None:
                decision = guard.decide(facts, wall, self._ident(guard))
            else:
                decision = w.gate.decide(facts)
        except Exception as exc:  # a guard bug must not close the shop: fail open, loudly
            w.reject_log("gate_error", repr(exc))
            return False
        self.facts = facts
        self.decision = decision
        if decision.action is _ALLOW or decision.shadow:
            return False  # parsed and forwarded as ever, on this decision
        if form < 0:
            form = well_formed(data)
            if not form:
                # the framer gives a malformed request its own 4xx: not a refusal
                if guard is not None:
                    guard.retract(decision)
                return False
            if len(data) <= _MEMO_MAX:
                self.memo = _Memo(data, w.framing_limits, facts, request, version, form)
        elif memo is not None and line is not None:
            memo.data = data
            memo.facts = facts
            memo.request = request
            memo.plain = memo.fields_plain
        if now < 0.0:
            now = w.loop.time()
        self.start = now
        self.wall = wall
        self.requests += 1
        resp = self._shield_answer(decision)
        self.req_done = True
        self.closing = decision.close or form != 2
        w.metrics.refused_early += 1
        assert self.transport is not None
        self.transport.write(resp)
        memo = self.memo
        if memo is None or not plain or not self._log_refused(memo, facts, decision, request):
            self._log_row(facts.method, b"", version, facts.path, facts.query, facts.referer,
                          facts.user_agent, request, plain)
        if memo is not None:
            memo.until = now + _MEMO_FRESH
        self._after(False, now)
        # what this exchange set, cleared (not the whole of _clear's fields)
        self.facts = None
        self.decision = None
        self.status = 0
        self.bytes_sent = 0
        self.outcome = _O_UNKNOWN
        self.resp_started = False
        self.req_done = False
        self.closing = False
        return True

    def _body_progress(self, n: int) -> None:
        # Minimum body rate: the deadline moves by n / rate for n bytes.
        rate = self.w.timeouts.min_body_rate
        if rate > 0:
            self.body_received += n
            self.deadline = (self.body_deadline_base + self.w.timeouts.body_grace
                             + self.body_received / rate)
        else:
            self.deadline = _INF

    def _process(self, events: list[Event], i: int, now: float = -1.0) -> None:
        """Walk the framer's events. ``now``: the loop's time if the caller
        read it (one clock read per callback: loop.time() is a method call,
        ~270 instructions, and a request made ten)."""
        n = len(events)
        while i < n:
            if self.state >= CLOSED:
                return
            kind, payload = events[i]
            if self.skip_to_end and kind != ERROR:
                if kind == END:
                    self.skip_to_end = False
                i += 1
                continue
            if kind == BODY:
                self._on_body(payload)
            elif kind == HEAD or (kind == ERROR and self.req_done):
                if self.head is not None:
                    # Pipelined: wait for the current response to finish.
                    self.backlog = events[i:]
                    self._pause(P_BACKLOG)
                    return
                if kind == ERROR:
                    self._on_error(payload)
                    return
                if now < 0.0:
                    now = self.w.loop.time()
                self._on_head(payload, now)
            elif kind == END:
                self._on_end(now)
            else:
                self._on_error(payload)
                return
            i += 1

    def _early_wanted(self, guard: GuardGate) -> bool:
        """The guard's ``early_wanted`` for ``peer``, asked again only after the
        guard put some address in its early window or left normal mode (its
        dict probe and clock read, ~200 instructions a request, otherwise)."""
        gen = guard.refusing_gen
        if gen == self.early_gen and guard.state.mode is _NORMAL_MODE:
            return False
        if guard.early_wanted(self.peer):
            return True
        self.early_gen = gen
        return False

    def _ident(self, guard: GuardGate) -> Identity:
        """The guard's identity of ``peer``, asked once per connection (and
        again after the guard dropped its memos: a new secret)."""
        ident = self.ident
        if ident is None or self.ident_gen != guard.ids_gen:
            ident = self.ident = guard.identity(self.peer)
            self.ident_gen = guard.ids_gen
        return ident

    def _on_head(self, head: RequestHead, loop_now: float) -> None:
        w = self.w
        self.start = loop_now
        self.wall = _wall_clock()
        self.head = head
        self.requests += 1
        if head.has_body:
            self.state = READING_BODY
            self.body_deadline_base = loop_now
            self.body_received = 0
            self.deadline = loop_now + w.timeouts.body_grace
        else:
            self.state = WAITING
            self.deadline = _INF
        client = self.client_address(head) if self.trusted else self.peer
        kept = self.decision
        facts = self.facts
        if kept is not None and facts is not None and facts.method == head.method and \
                facts.path == head.path and facts.query == head.query and \
                facts.cookie == head.cookie:
            # decided from the first bytes (_early) on these same facts
            decision = kept
        elif w.observe:
            if kept is not None:  # the parser saw another request than the early path
                w.reject_log("early_mismatch", f"{head.method} {head.path}")
            if facts is None:
                facts = self.last_facts
            if facts is None or facts.cookie is not head.cookie or facts.path != head.path \
                    or facts.query != head.query or facts.client is not client \
                    or facts.method is not head.method or facts.user_agent is not head.user_agent \
                    or facts.referer is not head.referer or facts.host is not head.host:
                # (else this connection's last facts again: a head the framer made
                # from the last one's field lines shares their strings, and a
                # flood's or a poller's requests repeat; ~300 instructions of
                # building and freeing it, and the tests by identity fail for
                # any head parsed anew)
                facts = RequestFacts(client, head.method, head.path, head.query, head.host,
                                     head.user_agent, head.referer, head.cookie, self.tls)
            self.facts = facts
            guard = w.guard
            try:
                if guard is not None:
                    decision = guard.decide(facts, self.wall,
                                            self._ident(guard) if client is self.peer else None)
                else:
                    decision = w.gate.decide(facts)
            except Exception as exc:  # a guard bug must not close the shop: fail open, loudly
                w.reject_log("gate_error", repr(exc))
                decision = ALLOW_ALL
        else:  # no guard: nothing to decide, so no facts to build
            self.facts = None
            decision = ALLOW_ALL
            if client is not self.peer:
                self.facts = RequestFacts(client, head.method, head.path, head.query)
        self.decision = decision
        # Most requests are allowed: one identity test before the property call.
        if decision.action is not _ALLOW and decision.enforced:
            resp = self._shield_answer(decision)
            self.discard = True
            if decision.close or not head.keep_alive:
                self.closing = True
            if head.has_body:
                # Never read a body we refused: closing is cheaper than draining.
                self.closing = True
            assert self.transport is not None
            self.transport.write(resp)
            self._finish()
            return
        if head.expect_continue and head.has_body:
            assert self.transport is not None
            self.transport.write(_CONTINUE)
        self.up_head = self._build_upstream_head(head)
        self._start_attempt(None, now=loop_now)

    def client_address(self, head: RequestHead) -> str:
        if not self.trusted or not head.xff:
            return self.peer
        # Walk X-Forwarded-For from the right, skipping trusted proxies.
        for item in reversed(head.xff.split(b",")):
            addr = item.strip().decode("latin-1")
            if not self.w.is_trusted(addr):
                return addr if self.w.is_ip(addr) else self.peer
        return self.peer

    def _build_upstream_head(self, head: RequestHead) -> bytes:
        method = _METHOD_SP.get(head.method)
        if method is None:
            method = head.method.encode() + b" "
        bodiless = head.content_length < 0 and not head.chunked
        fields = self.fwd_fields
        if bodiless and not self.trusted and fields is not None \
                and (fields is head.headers or fields == head.headers):
            # The header fields of this connection's last request again (a
            # browser's or a tool's requests on one connection mostly are):
            # the rest of the head is what followed that target.
            return method + head.target + self.fwd_tail
        peer = _peer_bytes(self.peer)
        xff = head.xff + b", " + peer if (self.trusted and head.xff) else peer
        parts = [b" HTTP/1.1"]
        for n, v in head.headers:
            parts.append(b"\r\n")
            parts.append(n)
            parts.append(b": ")
            parts.append(v)
        parts.append(b"\r\nX-Forwarded-For: ")
        parts.append(xff)
        parts.append(b"\r\nX-Forwarded-Proto: https\r\n" if self.tls
                     else b"\r\nX-Forwarded-Proto: http\r\n")
        if head.chunked:
            parts.append(_CHUNKED)
        elif head.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % head.content_length)
        parts.append(b"\r\n")
        tail = b"".join(parts)
        if bodiless and not self.trusted:
            self.fwd_fields = head.headers
            self.fwd_tail = tail
        return method + head.target + tail

    def _on_body(self, data: bytes) -> None:
        if self.discard:
            return
        head = self.head
        assert head is not None
        if head.chunked:
            data = b"%x\r\n" % len(data) + data + b"\r\n"
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.write(data)
        elif self.pending is not None:
            self.pending.append(data)
        else:
            self.pending = [data]

    def _on_end(self, now: float = -1.0) -> None:
        self.req_done = True
        if self.discard:
            return
        head = self.head
        assert head is not None
        if self.state == READING_BODY:
            self.state = WAITING
            self.deadline = _INF
        up = self.up
        if head.chunked:
            if up is not None and up.transport is not None:
                up.transport.write(_CHUNK_END)
            elif self.pending is not None:
                self.pending.append(_CHUNK_END)
            else:
                self.pending = [_CHUNK_END]
        if up is not None and not self.resp_started:
            if now < 0.0:
                now = self.w.loop.time()
            self.deadline = now + self.w.timeouts.upstream_response

    def _on_error(self, err: ClientError) -> None:
        if self.head is None:
            # (an allowed decision the early path kept was for bytes the parser refused)
            self.decision = None
            self.facts = None
        if self.head is not None and self.resp_started:
            # The body of a request whose response is already under way broke:
            # nothing sensible can follow on this connection.
            self._abort()
            return
        if self.up is not None:
            up = self.up
            self.up = None
            up.abort()
            self._release_backend(ok=True)
        self.w.reject_log(f"http_{err.status}", self.peer)
        self._client_error(err)

    def _client_error(self, err: ClientError) -> None:
        resp = error_response(err.status)
        if self.head is None:
            self.start = self.w.loop.time()
            self.wall = _wall_clock()
        self.status = err.status
        self.outcome = _O_SHIELD
        self.bytes_sent = len(resp)
        self.resp_started = True
        self.closing = True
        assert self.transport is not None
        self.transport.write(resp)
        self._finish()

    # -- attempts ----------------------------------------------------------
    def _start_attempt(self, exclude: BackendState | None,
                       otherwise: tuple[int, Outcome] = (503, Outcome.NO_UPSTREAM),
                       now: float = -1.0) -> None:
        w = self.w
        b = w.balancer.pick(exclude)
        if b is None:
            self._no_upstream(*otherwise)
            return
        self.backend = b
        b.outstanding += 1
        self.attempt += 1
        self.attempt_start = now if now >= 0.0 else w.loop.time()
        self.sent = False
        admission = w.admission
        if admission is not None and self.acquired is None:
            decision = self.decision
            assert decision is not None
            pa = w.priority
            if (pa.try_acquire(b.key, decision.cls, decision.priority) if pa is not None
                    else admission.try_acquire(b.key, decision.cls, decision.priority)):
                # A free slot and nobody waiting (the common case): no task,
                # no await, no pause/resume of the client's reads.
                self.acquired = b.key
                self._send(b, self.attempt_start)
                return
            self._pause(P_CONNECTING)
            w.spawn(self._admit(b))
            return
        self._send(b, self.attempt_start)

    async def _admit(self, b: BackendState) -> None:
        admission = self.w.admission
        assert admission is not None and self.decision is not None
        shed = await admission.acquire(b.key, self.decision.cls, self.decision.priority)
        if self.state >= CLOSED or self.backend is not b:
            if shed is None:
                admission.release(b.key, 0.0, False)
            return
        if shed is not None:
            b.outstanding -= 1
            self.backend = None
            self._resume(P_CONNECTING)
            resp = shed_response(shed)
            self.status = 503
            self.outcome = _O_SHIELD
            self.bytes_sent = len(resp)
            self.resp_started = True
            if not self.req_done and self.head is not None and self.head.has_body:
                self.closing = True
            assert self.transport is not None
            self.transport.write(resp)
            self._finish()
            return
        self.acquired = b.key
        self._resume(P_CONNECTING)
        self._send(b)

    def _send(self, b: BackendState, now: float = -1.0) -> None:
        up = self.w.pool.take(b)
        if up is not None:
            self._attach(up, now)
            return
        self._pause(P_CONNECTING)
        self.w.spawn(self._connect(b))

    async def _connect(self, b: BackendState) -> None:
        w = self.w
        try:
            up = await w.pool.connect(b)
        except TimeoutError:
            if self.backend is b and self.state < CLOSED:
                self._attempt_failed(up_mod.CONNECT_TIMEOUT)
            return
        except OSError:
            if self.backend is b and self.state < CLOSED:
                self._attempt_failed(up_mod.REFUSED)
            return
        if self.backend is not b or self.state >= CLOSED or self.up is not None:
            up.close()
            return
        self._resume(P_CONNECTING)
        self._attach(up)

    def _attach(self, up: UpstreamConnection, now: float = -1.0) -> None:
        head = self.head
        assert head is not None and up.transport is not None
        up.start(self, head.method == "HEAD")
        self.up = up
        pending = self.pending
        if pending:
            self.pending = None
            pending.insert(0, self.up_head)
            up.transport.writelines(pending)
        else:
            up.transport.write(self.up_head)
        self.sent = True
        if self.req_done:
            self.state = WAITING
            if now < 0.0:
                now = self.w.loop.time()
            self.deadline = now + self.w.timeouts.upstream_response

    def _attempt_failed(self, kind: int) -> None:
        """A connect that failed: nothing was sent."""
        self._resume(P_CONNECTING)
        self._failed(kind)

    def upstream_failed(self, up: UpstreamConnection, kind: int) -> None:
        if self.up is up:
            self.up = None
        self._failed(kind)

    def _failed(self, kind: int) -> None:
        w = self.w
        b = self.backend
        self._release_backend(ok=False)
        if b is not None:
            w.balancer.failed(b)
        err = UPSTREAM_FAILURES[kind]
        if self.resp_started:
            # Part of the response is out: nothing can repair it.
            self.outcome = err.outcome
            self.closing = True
            if self.transport is not None:
                self.transport.abort()
            return
        head = self.head
        assert head is not None
        sent = self.sent and err.sent
        if w.retry and should_retry(head.method, head.has_body, sent, self.attempt,
                                    err.timed_out):
            w.metrics.retries += 1
            self._start_attempt(b, (err.status, err.outcome))
            return
        self._no_upstream(err.status, err.outcome)

    def _release_backend(self, ok: bool, now: float = -1.0) -> None:
        b = self.backend
        if b is None:
            return
        self.backend = None
        b.outstanding -= 1
        if self.acquired is not None:
            w = self.w
            if now < 0.0:
                now = w.loop.time()
            latency = now - self.attempt_start
            pa = w.priority
            if pa is not None:
                pa.release(self.acquired, latency, ok, now)
            else:
                admission = w.admission
                assert admission is not None
                admission.release(self.acquired, latency, ok)
            self.acquired = None

    def _serve_stale(self) -> bool:
        """Answer from the stale cache if it holds this URL; False if not."""
        w = self.w
        head = self.head
        cache = w.cache
        if cache is None or head is None or head.method not in _SAFE_FOR_STALE:
            return False
        now = time.time()
        entry = cache.get(_cache_key(head), now)
        if entry is None:
            return False
        close = self.closing or (not self.req_done and head.has_body) or not head.keep_alive or w.draining
        w.metrics.stale_hits += 1
        resp = StaleCache.render(entry, now, head.method == "HEAD", close)
        self.status = entry.status
        self.outcome = Outcome.STALE
        self._respond_self(resp, close)
        return True

    def _no_upstream(self, status: int, outcome: Outcome) -> None:
        """No backend could answer: a stale copy if we have one, else an error."""
        w = self.w
        head = self.head
        assert head is not None and self.transport is not None
        self.up_status = 0
        if self._serve_stale():
            return
        close = self.closing or (not self.req_done and head.has_body) or not head.keep_alive or w.draining
        self.status = status
        self.outcome = outcome
        self._respond_self(error_response(status, close=close), close)

    def _respond_self(self, resp: bytes, close: bool) -> None:
        self.resp_started = True
        self.bytes_sent = len(resp)
        self.closing = self.closing or close
        if not self.req_done:
            self.discard = True
        assert self.transport is not None
        self.transport.write(resp)
        self._finish()

    # -- response side -----------------------------------------------------
    def upstream_head(self, up: UpstreamConnection, status: int, content_length: int) -> None:
        w = self.w
        head = self.head
        decision = self.decision
        assert head is not None and decision is not None and self.transport is not None
        now = _read_at(up, w)
        self.up_status = status
        self.status = status
        self.up_time = now - self.attempt_start
        self.outcome = _O_OK
        if (502 <= status <= 504 and w.cache is not None and head.method in _SAFE_FOR_STALE
                and w.cache.get(_cache_key(head), time.time()) is not None):
            # The backend answered that it cannot answer (its app server is
            # down behind it): the last good copy serves the shopper better.
            self.up_key = self.backend.key if self.backend is not None else ""
            if self.up is up:
                self.up = None
            up.abort()
            self._release_backend(ok=False)
            self._serve_stale()
            return
        b = self.backend
        if b is not None:
            self.up_key = b.key
            if b.ejected_until:
                w.balancer.succeeded(b)
            else:
                b.consecutive_fails = 0
        self.state = WAITING
        self.deadline = now + w.timeouts.upstream_response
        self.resp_started = True
        closing = (self.closing or not head.keep_alive or (not self.req_done and head.has_body) or w.draining)
        extra: Sequence[tuple[bytes, bytes]] = ()
        if w.observe:
            facts = self.facts
            assert facts is not None
            guard = w.guard
            headers = up.header_list()
            # (``self.wall``: the request's arrival, for the session cookie's times)
            extra = (guard.observe_response(facts, decision, status, headers, self.wall,
                                            self._ident(guard) if facts.client is self.peer
                                            else None)
                     if guard is not None
                     else w.gate.observe_response(facts, decision, status, headers))
        self.out_chunked = False
        # The plain shape (a length, kept alive, HTTP/1.1, nothing added):
        # the head sent last on this connection again when the backend sent
        # the same status line and fields (the head's list and join, ~1,000
        # instructions, once per change).
        plain = content_length >= 0 and not closing and not extra and \
            not decision.add_response_headers and head.version == "1.1"
        fields = up.fields
        status_line = up.status_line
        if plain and content_length == w.h_len and fields == w.h_fields \
                and status_line == w.h_status:
            self.closing = False
            self.wbuf = [w.h_bytes]
        else:
            self._response_head(up, decision, extra, content_length, closing, plain)
        cache = w.cache
        if (cache is not None and status == 200 and head.method == "GET"
                and content_length <= cache.max_object_bytes
                and not (self.wall < self.fresh_until and head.target == self.fresh_target
                         and head.host == self.fresh_host)):
            key = _cache_key(head)
            until = cache.fresh_until(key)
            if self.wall < until:
                # A copy younger than the cache's refresh: this connection
                # asks again for this URL only after it is due (no key, no
                # lookup, no clock per request until then).
                self.fresh_until = until
                self.fresh_target = head.target
                self.fresh_host = head.host
            elif cacheable(status, up.header_list()):
                self.cache_parts = []
                self.cache_size = 0
                self.cache_headers = [(n, v) for n, v in up.header_list() if n.lower() != b"age"]
                self.cache_reason = up.reason()

    def _response_head(self, up: UpstreamConnection, decision: Decision,
                       extra: Sequence[tuple[bytes, bytes]], content_length: int,
                       closing: bool, plain: bool) -> None:
        """The response's head as sent to the client, into ``wbuf``; kept as
        the worker's last (``Shared.h_*``) when of the plain shape."""
        head = self.head
        assert head is not None
        status = self.up_status
        # the status line and the field lines as received (hop-by-hop ones left out)
        parts = [up.status_line, up.fields]
        for n, v in decision.add_response_headers:
            parts.append(n + b": " + v + b"\r\n")
        for n, v in extra:
            parts.append(n + b": " + v + b"\r\n")
        if content_length >= 0:
            if content_length != self.len_n:
                # (a connection's responses mostly have one length: its line is kept)
                self.len_line = b"Content-Length: %d\r\n" % content_length
                self.len_n = content_length
            parts.append(self.len_line)
        elif head.method == "HEAD" or status == 204 or status == 304:
            pass  # no body
        elif head.version == "1.1":
            parts.append(_CHUNKED)
            self.out_chunked = True
        else:
            closing = True
        if closing:
            parts.append(_CLOSE)
        elif head.version == "1.0":
            parts.append(_KEEP)
        parts.append(b"\r\n")
        self.closing = closing
        joined = b"".join(parts)
        self.wbuf = [joined]
        if plain:
            w = self.w
            w.h_bytes = joined
            w.h_len = content_length
            w.h_fields = up.fields
            w.h_status = up.status_line

    def flush_out(self) -> None:
        buf = self.wbuf
        if buf is not None:
            self.wbuf = None
            t = self.transport
            if t is not None:
                t.write(buf[0] if len(buf) == 1 else b"".join(buf))

    def upstream_body(self, data: bytes) -> None:
        t = self.transport
        if t is None:
            return
        buf = self.wbuf
        if buf is None:
            buf = self.wbuf = []
        if self.out_chunked:
            buf.append(b"%x\r\n" % len(data))
            buf.append(data)
            buf.append(b"\r\n")
        else:
            buf.append(data)
        self.bytes_sent += len(data)
        if not self.write_paused:
            up = self.up
            now = _read_at(up, self.w) if up is not None else self.w.loop.time()
            self.deadline = now + self.w.timeouts.upstream_response
        parts = self.cache_parts
        if parts is not None:
            self.cache_size += len(data)
            cache = self.w.cache
            if cache is None or self.cache_size > cache.max_object_bytes:
                self.cache_parts = None
            else:
                parts.append(data)

    def upstream_end(self, up: UpstreamConnection) -> None:
        w = self.w
        if self.up is up:
            self.up = None
        if self.out_chunked:
            if self.wbuf is None:
                self.wbuf = [_CHUNK_END]
            else:
                self.wbuf.append(_CHUNK_END)
        self.flush_out()
        now = _read_at(up, w)
        self._release_backend(True, now)
        if self.req_done and not self.discard:
            w.pool.give_back(up, now)
        else:
            up.close()
        parts = self.cache_parts
        if parts is not None and w.cache is not None and self.head is not None:
            from shieldwall.proxy.cache import Entry

            w.cache.store(_cache_key(self.head),
                          Entry(200, self.cache_reason, list(self.cache_headers), b"".join(parts),
                                time.time()))
        self._finish(now)

    # -- end of an exchange --------------------------------------------------
    def _log_and_count(self, now: float = -1.0) -> None:
        head = self.head
        if head is not None:
            self._log_row(head.method, head.target, head.version, head.path, head.query,
                          head.referer, head.user_agent, now=now)
        else:
            self._log_row("", b"", "1.1", "", "", "", "")

    def _shield_answer(self, decision: Decision) -> bytes:
        """The guard's own answer to this request (its prebuilt bytes, else a
        403), recorded as the exchange's response: one place for the early
        refusal and the parsed one."""
        resp = decision.response or error_response(403)
        self.status = _status_of(resp)
        self.outcome = _O_SHIELD
        self.resp_started = True
        self.bytes_sent = len(resp)
        return resp

    def _log_row(self, method: str, target_b: bytes, version: str, path: str, query: str,
                 referer: str, agent: str, request: str = "", plain: bool = False,
                 now: float = -1.0) -> None:
        """The access log line, the metrics and the feed's row of the exchange
        that ends now (from the parsed head, or from the early path's fields:
        then ``request`` is the request line as sent, and a refusal is logged
        from parts made once, AccessLog.write_answered; ``plain``: none of
        request, referer and agent needs escaping)."""
        w = self.w
        if now < 0.0:
            now = w.loop.time()
        rt = now - self.start if self.start else 0.0
        decision = self.decision
        if decision is None:
            d = c = ""
            session = verified = False
        else:
            if decision is self.log_decision:
                # (the guard's allowed decisions are prebuilt: a connection's
                # requests mostly get the same object, and its labels)
                d = self.log_d
                c = self.log_c
            else:
                d = _ACTION[decision.action]
                if decision.shadow:
                    d = "shadow-" + d
                c = _CLASS[decision.cls]
                self.log_decision = decision
                self.log_d = d
                self.log_c = c
            session = decision.session
            verified = decision.cls is _VERIFIED
        o = self.outcome
        if o is self.log_o:
            outcome = self.log_outcome  # (the last one's again: no dict probe, ~130)
        else:
            outcome = self.log_outcome = _OUTCOME[o]
            self.log_o = o
        w.metrics.observe(self.status, d or "-", outcome, rt)
        up = self.up_key
        client = self.facts.client if self.facts is not None else self.peer
        log = w.access_log
        if not log.enabled:
            pass
        elif request and not up and decision is not None and not decision.shadow:
            # the end of the line by (action, class, session): an int key, made once
            cls_i: int = decision.cls
            key = _ACTION_INDEX[decision.action] * 16 + cls_i * 4 + session * 2 + verified
            tail = _TAILS.get(key)
            if tail is None or self.outcome is not _O_SHIELD:
                tail = log.answered_tail(outcome, d, c, session, verified)
                if self.outcome is _O_SHIELD:
                    _TAILS[key] = tail
            log.write_answered(client, self.wall, request, self.status, self.bytes_sent, referer,
                               agent, rt, tail, plain)
        else:
            if request:
                target = request[len(method) + 1:len(request) - 9]
            else:
                target = target_b.decode("latin-1")
            log.write(client, self.wall, method, target, version, self.status,
                      self.bytes_sent, referer, agent, rt, up, self.up_time,
                      self.up_status, outcome, d, c, session, verified)
        rows = w.feed_rows
        sinks = w.row_sinks
        if rows is not None or sinks:
            # The detector's row (shieldwall.detect.windows.Row): what it counts,
            # without an event object per request.
            row = (self.wall + rt, client, path, query, self.status, self.bytes_sent, rt, agent,
                   session, verified, outcome, self.up_time)
            if rows is not None:
                # One row for the detector and the console (shieldwall.rowfeed):
                # appended, no call and no object per request; they read it at their ticks.
                if len(rows) < w.feed_cap:
                    rows.append((row, d, c, up))
                else:
                    feed = w.feed
                    if feed is not None:
                        feed.dropped += 1
            for rs in sinks:
                try:
                    rs(row)
                except Exception as exc:  # a sink must never break the data path
                    w.reject_log("sink_error", repr(exc))
        if w.sinks:
            event = RequestEvent(
                time=self.wall, client=client, method=method, path=path, query=query,
                status=self.status, bytes_sent=self.bytes_sent, request_time=rt,
                user_agent=agent, referer=referer, upstream=up, outcome=self.outcome,
                upstream_time=self.up_time, decision=d, cls=c,
                session=session, verified=verified,
            )
            for sink in w.sinks:
                try:
                    sink(event)
                except Exception as exc:  # a sink must never break the data path
                    w.reject_log("sink_error", repr(exc))

    def _log_refused(self, memo: _Memo, facts: RequestFacts, decision: Decision,
                     request: str) -> bool:
        """What ``_log_row`` does for a refusal of the early path, from the
        parts its connection's memo keeps (issue 10): the access-log line is
        its head, the request line and the rest as the last refusal made it;
        the metrics a native count (metrics.Tally); the feed's row as ever.
        Answered in the callback that read it, the request took no time
        (rt 0: uvloop's clock counts whole milliseconds anyway). False,
        having done nothing, where ``_log_row`` is needed: sinks other than
        the feed, or referer and agent that need escaping."""
        w = self.w
        if w.row_sinks or w.sinks or not memo.fields_plain:
            return False
        log = w.access_log
        if memo.decision is not decision:
            d = _ACTION[decision.action]
            c = _CLASS[decision.cls]
            outcome = _OUTCOME[self.outcome]
            session = decision.session
            verified = decision.cls is _VERIFIED
            memo.after = (f'" {self.status} {self.bytes_sent} "{facts.referer or "-"}" '
                          f'"{facts.user_agent or "-"}" rt=0.000'
                          + log.answered_tail(outcome, d, c, session, verified))
            memo.tally = w.metrics.tally(self.status, d, outcome)
            memo.outcome, memo.row_d, memo.row_c = outcome, d, c
            memo.session, memo.verified = session, verified
            memo.rest_for = ""
            memo.decision = decision
        tally = memo.tally
        assert tally is not None
        tally.n += 1
        if log.enabled:
            if request is not memo.rest_for:
                memo.rest = '"' + request + memo.after
                memo.rest_for = request
            log.append(log.line_head(self.peer, self.wall) + memo.rest)
        rows = w.feed_rows
        if rows is not None:
            if len(rows) < w.feed_cap:
                rows.append(((self.wall, self.peer, facts.path, facts.query, self.status,
                              self.bytes_sent, 0.0, facts.user_agent, memo.session,
                              memo.verified, memo.outcome, self.up_time), memo.row_d,
                             memo.row_c, ""))
            else:
                feed = w.feed
                if feed is not None:
                    feed.dropped += 1
        return True

    def _finish(self, now: float = -1.0) -> None:
        self._log_and_count(now)
        self._after(True, now)

    def _after(self, clear: bool, now: float = -1.0) -> None:
        """The exchange is logged: ready the connection for the next request,
        or close it. ``clear``: reset the exchange's fields here (the early
        path has reset the few it set). ``now``: the loop's time if the
        caller has it."""
        closing = self.closing or self.w.draining
        linger = closing and (self.outcome is _O_SHIELD or not self.req_done)
        if not self.req_done and not closing:
            self.skip_to_end = True
        if clear:
            self._clear()
        t = self.transport
        if t is None or self.state >= CLOSED:
            return
        if closing:
            self.backlog = None
            if linger and t.can_write_eof():
                self.state = LINGER
                t.write_eof()
                if self.pause_bits:
                    self.pause_bits = 0
                    t.resume_reading()
                self.deadline = self.w.loop.time() + _LINGER_SECONDS
            else:
                self.state = CLOSED
                t.close()
            return
        self.state = IDLE
        if now < 0.0:
            now = self.w.loop.time()
        self.deadline = now + self.w.timeouts.idle
        if self.write_paused:
            self.deadline = min(self.deadline, self.write_paused_at + self.w.timeouts.send)
        if self.backlog is not None:
            self.w.loop.call_soon(self._drain_backlog)

    def _drain_backlog(self) -> None:
        backlog = self.backlog
        if backlog is None or self.state >= CLOSED or self.head is not None:
            return
        self.backlog = None
        self.state = READING_HEAD
        self.deadline = self.w.loop.time() + self.w.timeouts.header
        self._process(backlog, 0)
        if self.backlog is None:
            self._resume(P_BACKLOG)

    def close_if_idle(self) -> bool:
        if self.state == IDLE and self.head is None and self.transport is not None:
            self.state = CLOSED
            self.transport.close()
            return True
        return False


def _read_at(up: UpstreamConnection, w: Shared) -> float:
    """The loop's time during ``up``'s current read (UpstreamConnection.read_at):
    read once, however many of the response's callbacks that read makes."""
    now = up.read_at
    if now < 0.0:
        now = up.read_at = w.loop.time()
    return now


def _cache_key(head: RequestHead) -> bytes:
    return head.host.encode("latin-1") + b" " + head.target


def _status_of(resp: bytes) -> int:
    """The status of a complete response (``HTTP/1.1 429 ...``): three digits
    read as bytes, not ``int()`` of a slice (compiled, that was 1,100
    instructions a refusal)."""
    if len(resp) < 12:
        return 0
    a, b, c = resp[9] - 48, resp[10] - 48, resp[11] - 48
    if not (0 <= a <= 9 and 0 <= b <= 9 and 0 <= c <= 9):
        return 0
    return a * 100 + b * 10 + c
