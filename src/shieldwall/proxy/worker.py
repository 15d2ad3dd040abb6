"""One worker: the listeners, the shared state of its connections, and the
periodic sweeper that enforces every deadline, closes idle upstream
connections, flushes the access log and publishes metrics.

A worker runs in one event loop. :func:`run_shield` runs one inside the
calling process (tests use it); ``shieldwall serve`` runs one per process
(shieldwall.proxy.supervisor).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import os
import select
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from shieldwall.config import Config
from shieldwall.guard.decision import OpenAdmission, OpenGate
from shieldwall.http.errors import error_response
from shieldwall.http.framing import FramingLimits
from shieldwall.http.proxy_protocol import ProxyProtocolError
from shieldwall.metrics import Metrics, exposition, write_snapshot
from shieldwall.proxy import health
from shieldwall.proxy.accesslog import AccessLog
from shieldwall.proxy.admin import AdminApp, attach_console, health_ok, protocol_factory
from shieldwall.proxy.balancer import BackendState, Balancer
from shieldwall.proxy.cache import StaleCache
from shieldwall.proxy.fanout import FanOut, Peers, bind_private, report_loop, socket_path
from shieldwall.proxy.proxy_header import AddressSet, HeaderEOF, client_of, read_header, try_read
from shieldwall.proxy.server import ClientConnection, Shared
from shieldwall.proxy.upstream import Pool, Pools
from shieldwall.proxy.wiring import Service, Wiring, wire


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket; with SO_REUSEPORT several workers share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def admin_token(config: Config) -> str:
    return config.admin.token or os.environ.get("SHIELDWALL_ADMIN_TOKEN", "")


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between young-generation collections in a serving worker
(CPython's default is 700). A young collection walks every young object
still alive, and a request in flight keeps its head, header list and
tuples alive across the wait for the backend: with 1,000 connections in
flight each of the default's collections walked ~10,000 such objects
(~1.1 ms, ~180 collections per 77,000 requests, promoting them to the
older generations and their longer walks), ~4 us per request, against
~0.5 us at 100 connections. Objects freed by their reference count are
not affected; only cyclic garbage (~17 objects per closed connection)
waits a little longer."""


def serving_gc() -> None:
    """Tune the cyclic collector for a long-lived server, once the worker has
    started: what startup made (modules, config, the guard's and detector's
    tables) is frozen out of every later collection (it is never garbage,
    and a full collection walked all of it: a 46 ms pause at 1,000
    connections), and young collections run every
    :data:`GC_YOUNG_THRESHOLD` allocations instead of 700. Collection stays
    on. Called by ``serve`` (one process per worker), not by
    :func:`run_shield`: a test process is not a server."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class Worker:
    def __init__(self, config: Config, wiring: Wiring | None = None, index: int = 0,
                 metrics_dir: Path | None = None, peer_dir: Path | None = None,
                 peer_count: int = 1, restarted: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self.index = index
        self.metrics_dir = metrics_dir
        self.peers = Peers(peer_dir, index, peer_count) if peer_dir and peer_count > 1 else None
        """The other workers' private admin sockets (shieldwall.proxy.fanout)."""
        self.restarted = restarted
        self.wiring = wiring if wiring is not None else wire(config)
        self.metrics = Metrics()
        self.balancer = Balancer(self.loop.time)
        self.hot = Shared(self, self.loop, self.metrics, self.balancer, Pool(0, 1.0, 1.0),
                          AccessLog("off"))
        """What the connections read per request, as a compiled object
        (shieldwall.proxy.server.Shared); the attributes below of the same
        names are the same objects, or properties over its fields."""
        hot = self.hot
        self.gate = hot.gate = self.wiring.gate
        self.observe = hot.observe = not isinstance(self.gate, OpenGate)
        self.refuse_at_accept: Callable[[str], bool] | None = getattr(
            self.gate, "refused_at_accept", None)
        """The gate's optional verdict on a new connection's address (the guard: banned)."""
        hot.early = getattr(self.gate, "early_wanted", None)
        self.admission = hot.admission = (
            None if isinstance(self.wiring.admission, OpenAdmission) else self.wiring.admission)
        self.sinks = hot.sinks = list(self.wiring.sinks)
        self.row_sinks = hot.row_sinks = list(self.wiring.row_sinks)
        self.feed = hot.feed = self.wiring.feed
        self.feed_rows = hot.feed_rows = self.feed.rows if self.feed is not None else None
        """The feed's list, appended to by the proxy directly (shieldwall.rowfeed)."""
        self.feed_cap = hot.feed_cap = self.feed.cap if self.feed is not None else 0
        self.conns: set[ClientConnection] = hot.conns
        self.per_client: dict[str, int] = hot.per_client
        self.tasks: set[asyncio.Task[Any]] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.acceptor = Acceptor(self, None, None, lambda peer: asyncio.Protocol())
        self._log_times: dict[str, float] = {}
        self._log_counts: dict[str, int] = {}
        self._path_checked: set[tuple[str, str]] = set()
        """(backend, health path) pairs whose first answer was checked for a 4xx."""
        self._access_target = "off"
        self.config = config
        self.apply(config)
        self.metrics.connections_open = lambda: len(self.conns)
        self.metrics.backends = lambda: [(b.key, b.healthy, b.outstanding)
                                         for b in self.balancer.backends]
        self.metrics.panic = lambda: self.balancer.panic
        self.metrics.log_dropped = lambda: self.access_log.dropped

    # -- the fields the connections read (Shared) -------------------------
    @property
    def draining(self) -> bool:
        return self.hot.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.hot.draining = value

    @property
    def pool(self) -> Pools:
        return self.hot.pool

    @pool.setter
    def pool(self, value: Pools) -> None:
        self.hot.pool = value

    @property
    def cache(self) -> StaleCache | None:
        return self.hot.cache

    @cache.setter
    def cache(self, value: StaleCache | None) -> None:
        self.hot.cache = value

    @property
    def access_log(self) -> AccessLog:
        return self.hot.access_log

    @access_log.setter
    def access_log(self, value: AccessLog) -> None:
        self.hot.access_log = value

    @property
    def retry(self) -> bool:
        return self.hot.retry

    @retry.setter
    def retry(self, value: bool) -> None:
        self.hot.retry = value

    @property
    def framing_limits(self) -> FramingLimits:
        return self.hot.framing_limits

    # -- config ------------------------------------------------------------
    def apply(self, config: Config) -> None:
        """Take a (re)loaded config: backends, limits, timeouts, cache. The
        listen addresses are fixed for the life of the process."""
        self.config = config
        self.limits = config.limits
        self.timeouts = config.timeouts
        hot = self.hot
        hot.framing_limits = FramingLimits(
            config.limits.max_request_line, config.limits.max_header_bytes,
            config.limits.max_headers, config.limits.max_body_bytes)
        t, ct = hot.timeouts, config.timeouts
        t.header, t.idle, t.send = ct.header, ct.idle, ct.send
        t.min_body_rate, t.body_grace = ct.min_body_rate, ct.body_grace
        t.upstream_response = ct.upstream_response
        hot.limits.max_connections = config.limits.max_connections
        hot.limits.max_connections_per_client = config.limits.max_connections_per_client
        up = config.upstream
        b = self.balancer
        b.max_fails = up.max_fails
        b.eject_time = up.eject_time
        b.healthy_threshold = up.health.healthy_threshold
        b.unhealthy_threshold = up.health.unhealthy_threshold
        b.panic_threshold = up.health.panic_threshold
        removed = b.set_backends((be.key, be.host, be.port, be.weight) for be in config.backends)
        for gone in removed:
            self.pool.drop_backend(gone.key)
        self._check_panic()
        self.pool.keepalive = up.keepalive
        self.pool.idle_timeout = up.idle_timeout
        self.pool.connect_timeout = config.timeouts.upstream_connect
        self.retry = up.retry
        c = config.cache
        if not c.enabled or c.max_bytes == 0:
            self.cache = None
        elif self.cache is None:
            self.cache = StaleCache(c.max_bytes, c.max_object_bytes, c.max_stale, c.refresh)
        else:
            self.cache.max_bytes, self.cache.max_object_bytes = c.max_bytes, c.max_object_bytes
            self.cache.max_stale, self.cache.refresh = c.max_stale, c.refresh
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies]
        self.balancers = AddressSet(config.proxy_protocol_from)
        """Peers whose connections start with a PROXY protocol header."""
        self._trusted_cache: dict[str, bool] = {}
        if config.access_log != self._access_target:
            self.access_log.close()
            self.access_log = AccessLog(config.access_log)
            self._access_target = config.access_log
        self.tick = max(0.02, min(0.5, min(config.timeouts.header, config.timeouts.idle,
                                          config.timeouts.send, config.timeouts.body_grace,
                                          config.timeouts.upstream_response) / 5))

    def has_room(self, peer: str) -> bool:
        """Whether a new connection from ``peer`` is within the connection caps
        (ClientConnection.connection_made refuses it otherwise)."""
        return len(self.conns) < self.limits.max_connections and \
            self.per_client.get(peer, 0) < self.limits.max_connections_per_client

    def is_trusted(self, addr: str) -> bool:
        if not self._trusted:
            return False
        got = self._trusted_cache.get(addr)
        if got is None:
            try:
                ip = ipaddress.ip_address(addr)
                got = any(ip in n for n in self._trusted)
            except ValueError:
                got = False
            if len(self._trusted_cache) > 4096:
                self._trusted_cache.clear()
            self._trusted_cache[addr] = got
        return got

    @staticmethod
    def is_ip(addr: str) -> bool:
        return _is_ip(addr)

    # -- small services for the connections ------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.reject_log("internal_error", repr(task.exception()))

    def refuse(self, transport: asyncio.Transport, reason: str, status: int, client: str) -> None:
        self.metrics.reject(reason)
        self.reject_log(reason, f"client {client}")
        transport.write(error_response(status))
        transport.close()

    def reject_log(self, kind: str, detail: str) -> None:
        """Rate-limited: at most one line per kind per second, with a count."""
        if kind.startswith(("http_", "header_", "body_", "slow_")):
            self.metrics.reject(kind)
        now = self.loop.time()
        last = self._log_times.get(kind, -10.0)
        if now - last < 1.0:
            self._log_counts[kind] = self._log_counts.get(kind, 0) + 1
            return
        skipped = self._log_counts.pop(kind, 0)
        self._log_times[kind] = now
        more = f" (+{skipped} more)" if skipped else ""
        print(f"shieldwall[{self.index}]: {kind} {detail}{more}", file=sys.stderr, flush=True)

    # -- listeners -----------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if not tls.cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls.cert, tls.key)
        return ctx

    async def start(self, sock: socket.socket, admin_sock: socket.socket | None) -> None:
        if self.peers is not None:
            await self._join_peers()
        ctx = self.ssl_context()
        tls = ctx is not None
        self.acceptor = Acceptor(self, sock, ctx, lambda peer: ClientConnection(self, tls, peer))
        self.acceptor.start()
        if admin_sock is not None:
            app = AdminApp(self.wiring.routes, admin_token(self.config), self.render_metrics,
                           health_ok(lambda: self.draining, self.metrics.backends,
                                     self.metrics.panic))
            if self.peers is not None:
                app.fanout = FanOut(self.peers)
            console = attach_console(app)
            self.wiring.services.append(Service("console-ui", console.start, console.stop))
            self.servers.append(await self.loop.create_server(
                protocol_factory(app, self.spawn), sock=admin_sock))
        for svc in self.wiring.services:
            await svc.start()
        self.spawn(self._sweeper())
        self.spawn(self._health_checks())

    async def _join_peers(self) -> None:
        """Listen on the private socket (requests queue in the kernel), take a
        live peer's state when this worker replaces a dead one, then serve
        it: a change forwarded meanwhile is applied after the snapshot. All
        before the first client connection is accepted."""
        peers = self.peers
        assert peers is not None
        try:
            psock = bind_private(socket_path(peers.dir, self.index))
        except OSError as exc:  # e.g. a TMPDIR too long for a unix socket path
            print(f"shieldwall[{self.index}]: no private admin socket ({exc}); operator "
                  "changes will not reach this worker", file=sys.stderr, flush=True)
            self.peers = None
            return
        if self.restarted:
            for hook in self.wiring.peers:
                snap = await peers.pull(hook.snapshot_path)
                if snap is None:
                    self.reject_log("peer_state", "no live peer answered; starting from the config")
                else:
                    hook.restore(snap)
        routes = self.wiring.routes + [r for h in self.wiring.peers for r in h.routes]
        app = AdminApp(routes, admin_token(self.config), self.render_metrics,
                       health_ok(lambda: self.draining, self.metrics.backends,
                                     self.metrics.panic))
        self.servers.append(await self.loop.create_server(
            protocol_factory(app, self.spawn), sock=psock))
        reports = [h.report for h in self.wiring.peers]
        if reports:
            self.spawn(report_loop(peers, reports))

    def render_metrics(self) -> bytes:
        text = exposition(self.metrics, self.metrics_dir, self.index)
        extra = "".join(part() for part in self.wiring.metrics)
        return text + extra.encode() if extra else text

    async def _sweeper(self) -> None:
        loop = self.loop
        last_snapshot = 0.0
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for conn in [c for c in self.conns if c.deadline <= now]:
                try:
                    conn.on_deadline(now)
                except Exception as exc:  # one broken connection must not stop the sweeper
                    self.reject_log("internal_error", repr(exc))
                    if conn.transport is not None:
                        conn.transport.abort()
            self.pool.sweep(now)
            self.access_log.flush()
            if self.metrics_dir is not None and now - last_snapshot >= 1.0:
                last_snapshot = now
                try:
                    write_snapshot(self.metrics, self.metrics_dir, self.index)
                except OSError:
                    pass

    async def _health_checks(self) -> None:
        while True:
            hc = self.config.upstream.health
            if hc.enabled:
                for b in list(self.balancer.backends):
                    if not b.probing:
                        b.probing = True
                        self.spawn(self._probe(b))
            await asyncio.sleep(hc.interval)

    async def _probe(self, b: BackendState) -> None:
        hc = self.config.upstream.health
        try:
            status = await health.probe_status(b.host, b.port, hc.path, b.key, hc.timeout)
        finally:
            b.probing = False
        if self.index == 0 and (b.key, hc.path) not in self._path_checked and status is not None:
            # Once per backend and path (at startup, and for a reload's new
            # ones): a 4xx is a wrong path far more often than a sick shop.
            self._path_checked.add((b.key, hc.path))
            warning = health.wrong_path_warning(b.key, hc.path, status)
            if warning is not None:
                print(f"shieldwall[{self.index}]: {warning}", file=sys.stderr, flush=True)
        bal = self.balancer
        if bal.probe_result(b, health.passes(status)):
            state = "up" if b.up_by_health else "down"
            print(f"shieldwall[{self.index}]: backend {b.key} is {state} (health check)",
                  file=sys.stderr, flush=True)
            self._check_panic()

    def _check_panic(self) -> None:
        bal = self.balancer
        if not bal.update_panic():
            return
        n = len(bal.backends)
        if bal.panic:
            print(f"shieldwall[{self.index}]: routing in panic: {bal.passing} of {n} backend(s) "
                  f"pass the health check (under {bal.panic_threshold:.0%}); sending requests to "
                  "all of them (a backend failing real requests is still ejected) and probing "
                  "until they recover", file=sys.stderr, flush=True)
        else:
            print(f"shieldwall[{self.index}]: panic over: {bal.passing} of {n} backend(s) pass "
                  "the health check", file=sys.stderr, flush=True)

    # -- shutdown ------------------------------------------------------------
    async def drain(self, timeout: float) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout``),
        close idle keep-alive connections, then close what is left."""
        self.draining = True
        self.acceptor.stop()
        for srv in self.servers:
            srv.close()
        deadline = self.loop.time() + timeout
        while True:
            for c in list(self.conns):
                c.close_if_idle()
            if not self.conns or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        await self.stop()

    async def stop(self) -> None:
        self.draining = True
        self.acceptor.stop()
        for srv in self.servers:
            srv.close()
        for svc in self.wiring.services:
            try:
                await svc.stop()
            except Exception as exc:
                self.reject_log("service_stop", repr(exc))
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        self.pool.close_all()
        self.access_log.close()
        self.acceptor.close_parking()


_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Acceptor:
    """Our own accept loop. uvloop's built-in server accepts only a few
    connections per loop iteration when the loop is busy, so under load
    connections wait seconds in the kernel's accept queue (measured: 170
    queued at 1,000 wrk connections, p99 2.3 s). Here every wake-up drains the
    queue (up to 512). Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
    ENOMEM): log (rate-limited), stop listening for 100 ms, retry; never crash."""

    def __init__(self, worker: Worker, sock: socket.socket | None, ctx: ssl.SSLContext | None,
                 factory: Callable[[str | None], asyncio.Protocol]) -> None:
        self.worker = worker
        self.sock = sock
        self.ctx = ctx
        self.factory = factory
        self.active = False
        self.stopped = False
        self.parking: Parking | None = None
        if sock is not None and ctx is None and hasattr(select, "epoll"):
            self.parking = Parking(worker.loop, self._unpark, self._answered)
        self.answered_parked = 0
        """Requests answered on a parked socket (ClientConnection.answer_peeked)."""

    def start(self) -> None:
        if self.sock is None or self.stopped or self.active:
            return
        self.worker.loop.add_reader(self.sock.fileno(), self._ready)
        self.active = True

    def stop(self) -> None:
        self.stopped = True
        if self.active and self.sock is not None:
            self.worker.loop.remove_reader(self.sock.fileno())
        self.active = False

    def _ready(self) -> None:
        sock = self.sock
        assert sock is not None
        w = self.worker
        for _ in range(512):
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                w.reject_log("accept_error", f"{exc}; retrying in 100 ms")
                if exc.errno in _RESOURCE_ERRNOS:
                    w.metrics.reject("accept_" + (errno.errorcode.get(exc.errno or 0, "error")).lower())
                self.stop()
                self.stopped = False
                w.loop.call_later(0.1, self.start)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The peer address from accept() goes to the protocol: asking the
            # transport for it would build and keep a socket-like object per
            # connection.
            peer = addr[0] if isinstance(addr, tuple) else None
            if peer is not None and peer in w.balancers:
                self._proxied(conn, peer)
            else:
                self._take(conn, peer)

    def _take(self, conn: socket.socket, peer: str | None) -> None:
        w = self.worker
        if peer is not None and w.refuse_at_accept is not None and not w.is_trusted(peer) \
                and w.refuse_at_accept(peer):
            # A banned address (the guard says): closed before any transport.
            w.metrics.reject("banned_at_accept")
            conn.close()
            return
        if self.parking is not None and peer is not None and self.worker.has_room(peer):
            self._park(conn, peer)
        else:  # TLS, or a connection to refuse: a transport at once, as ever
            self.worker.spawn(self._adopt(conn, peer))

    # -- PROXY protocol (shieldwall.proxy.proxy_header) -----------------------
    def _proxied(self, conn: socket.socket, peer: str) -> None:
        """A balancer's connection: its header names the client, then it is
        taken like any other under the client's address."""
        got = bytearray()
        try:
            header = try_read(conn, got)
        except HeaderEOF:  # a TCP health check: connect, close
            conn.close()
            return
        except (ProxyProtocolError, OSError) as exc:
            self._bad_header(conn, peer, str(exc))
            return
        if header is None:
            self.worker.spawn(self._await_header(conn, peer, got))
        else:
            self._take(conn, client_of(header, peer))

    async def _await_header(self, conn: socket.socket, peer: str, got: bytearray) -> None:
        w = self.worker
        try:
            header = await read_header(w.loop, conn, got, w.timeouts.header)
        except HeaderEOF:
            conn.close()
            return
        except TimeoutError:
            self._bad_header(conn, peer, f"no complete header within {w.timeouts.header:g} s")
            return
        except (ProxyProtocolError, OSError) as exc:
            self._bad_header(conn, peer, str(exc))
            return
        except BaseException:
            conn.close()
            raise
        if self.stopped:
            conn.close()
        else:
            self._take(conn, client_of(header, peer))

    def _bad_header(self, conn: socket.socket, peer: str, why: str) -> None:
        self.worker.metrics.reject("proxy_protocol")
        self.worker.reject_log("proxy_protocol", f"{peer}: {why}; connection closed")
        conn.close()

    def _park(self, conn: socket.socket, peer: str) -> None:
        """Count the connection in (limits, header deadline) as a transport
        would, but watch it in the parking's epoll set until its first byte."""
        parking = self.parking
        assert parking is not None
        proto = self.factory(peer)
        parked = Parked(parking, conn, proto)
        proto.connection_made(parked)
        if self._answered(parked) and parked.is_closing():
            return  # a refused address's request, there at accept: answered and closed
        parking.park(parked)

    def _answered(self, parked: Parked) -> bool:
        """A connection from an address refused lately (connection-per-request
        floods reconnect for every request): its first request peeked from the
        socket and, when the early path refuses it, answered there, with no
        transport made (ClientConnection.answer_peeked). True if answered."""
        proto = parked.proto
        if parked.closed or not isinstance(proto, ClientConnection) or not proto.peek_wanted():
            return False
        try:
            data = parked.sock.recv(self.worker.hot.framing_limits.max_header_bytes,
                                    socket.MSG_PEEK)
        except OSError:  # (nothing yet: BlockingIOError; a reset: the transport finds it)
            return False
        if not data:
            return False
        parked.unread = len(data)
        try:
            answered = proto.answer_peeked(data)
        finally:
            parked.unread = 0
        if answered:
            self.answered_parked += 1
        return answered

    def _unpark(self, parked: Parked) -> None:
        self.worker.spawn(self._adopt_parked(parked))

    async def _adopt_parked(self, parked: Parked) -> None:
        proto = parked.proto
        try:
            await self.worker.loop.connect_accepted_socket(lambda: proto, parked.sock)
        except Exception as exc:  # whatever it was, the connection must not stay counted
            self.worker.reject_log("handshake_failed", repr(exc))
            parked.sock.close()
            parked.closed = True
            proto.connection_lost(exc)

    def close_parking(self) -> None:
        if self.parking is not None:
            self.parking.close()
            self.parking = None

    async def _adopt(self, conn: socket.socket, peer: str | None) -> None:
        factory = self.factory
        try:
            await self.worker.loop.connect_accepted_socket(
                lambda: factory(peer), conn, ssl=self.ctx,
                ssl_handshake_timeout=self.worker.timeouts.header if self.ctx else None)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.worker.reject_log("handshake_failed", repr(exc))
            conn.close()


class Parking:
    """Accepted connections that have not sent a byte yet, watched in one
    epoll set of our own (registered with the loop as a single reader).

    A uvloop transport costs ~1.3 KB of memory per connection (the transport,
    its libuv handle, a context copy, a weak reference, buffers); an epoll
    registration costs the process nothing (the kernel keeps it). A shield
    holding 10,000 idle connections (a slowloris, a crowd of keep-alive
    browsers opening spare connections) pays ~0.7 KB for each instead of ~2 KB.
    The first readable event (bytes, EOF or an error) gives the connection
    its real transport, which then reads what is waiting in the kernel."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 adopt: Callable[[Parked], None],
                 answered: Callable[[Parked], bool] = lambda parked: False) -> None:
        self.loop = loop
        self.adopt = adopt
        self.answered = answered
        """Answers a refused address's first request on the socket (Acceptor._answered)."""
        self.ep = select.epoll()
        self.waiting: dict[int, Parked] = {}
        loop.add_reader(self.ep.fileno(), self._ready)

    def park(self, parked: Parked) -> None:
        fd = parked.sock.fileno()
        self.ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        self.waiting[fd] = parked

    def forget(self, parked: Parked) -> None:
        fd = parked.sock.fileno()
        if self.waiting.get(fd) is parked:
            del self.waiting[fd]
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def _ready(self) -> None:
        for fd, _events in self.ep.poll(0, 512):
            parked = self.waiting.pop(fd, None)
            if parked is None:
                continue
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
            if self.answered(parked) and parked.is_closing():
                continue  # a refused address's request answered on the socket: no transport
            # A client that leaves without a word (EOF or reset) needs no
            # transport to be closed: what a transport would have done.
            try:
                gone = parked.sock.recv(1, socket.MSG_PEEK) == b""
            except (BlockingIOError, InterruptedError):
                gone = False
            except OSError:
                gone = True
            if gone:
                parked.closed = True
                parked.sock.close()
                self.loop.call_soon(parked.proto.connection_lost, None)
                continue
            parked.adopting = True
            self.adopt(parked)

    def close(self) -> None:
        """After the worker closed its connections (parked ones included)."""
        for parked in list(self.waiting.values()):
            parked.abort()
        self.loop.remove_reader(self.ep.fileno())
        self.ep.close()


class Parked(asyncio.Transport):
    """The stand-in transport of a parked connection. The protocol sees
    ``connection_made`` at accept time, as before; when the real transport
    arrives, ``connection_made`` is called again with it (ClientConnection
    takes it over). Closing a parked connection closes the socket and calls
    ``connection_lost`` soon, as a transport does."""

    __slots__ = ("adopting", "close_later", "closed", "parking", "proto", "sock", "unread",
                 "unsent")

    def __init__(self, parking: Parking, sock: socket.socket, proto: asyncio.Protocol) -> None:
        self.parking = parking
        self.sock = sock
        self.proto = proto
        self.adopting = False
        self.close_later = False
        """Closed while its real transport was being made: that one closes."""
        self.closed = False
        self.unread = 0
        """Bytes peeked from the socket that an answer given here takes off it."""
        self.unsent = b""
        """Answer bytes the socket did not take at once: the real transport sends them."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.unsent if name == "unsent" else default

    def is_closing(self) -> bool:
        return self.closed or self.close_later

    def can_write_eof(self) -> bool:
        # (no lingering half-close here: the request was read whole, so a close
        # sends the answer and a FIN, not a reset)
        return False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """An answer to the peeked request (ClientConnection.answer_peeked):
        the request's bytes are taken off the socket, then the answer sent."""
        if self.closed:
            return
        sock = self.sock
        try:
            if self.unread:
                n, self.unread = self.unread, 0
                while n > 0:
                    got = sock.recv(n)
                    if not got:
                        break
                    n -= len(got)
            sent = 0 if self.unsent else sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the client is gone: nothing to deliver
            self.close()
            return
        if sent < len(data):
            self.unsent += bytes(data[sent:])

    def close(self) -> None:
        if self.closed or self.close_later:
            return
        if self.adopting:
            self.close_later = True
            return
        if self.unsent:  # the real transport sends the rest, then closes
            self.close_later = True
            self.parking.forget(self)
            self.adopting = True
            self.parking.adopt(self)
            return
        self.closed = True
        self.parking.forget(self)
        self.sock.close()
        self.parking.loop.call_soon(self.proto.connection_lost, None)

    def abort(self) -> None:
        self.close()


@lru_cache(maxsize=4096)
def _is_ip(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
        return True
    except ValueError:
        return False


class Shield:
    """A running shield inside this process (what :func:`run_shield` yields)."""

    def __init__(self, worker: Worker, host: str, port: int, admin_host: str,
                 admin_port: int) -> None:
        self.worker = worker
        self.host = host
        self.port = port
        self.admin_host = admin_host
        self.admin_port = admin_port

    @property
    def url(self) -> str:
        scheme = "https" if self.worker.config.tls.cert else "http"
        return f"{scheme}://{_fmt_host(self.host)}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{_fmt_host(self.admin_host)}:{self.admin_port}"

    def reload(self, config: Config) -> None:
        self.worker.apply(config)

    async def drain(self, timeout: float | None = None) -> None:
        await self.worker.drain(self.worker.timeouts.drain if timeout is None else timeout)


def _fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def banner(shield: Shield) -> str:
    """The line tests and humans read to learn the ports."""
    return f"shieldwall listening on {shield.url} admin {shield.admin_url}"


@asynccontextmanager
async def run_shield(config: Config, wiring: Wiring | None = None,
                     admin: bool = True) -> AsyncIterator[Shield]:
    """Run a one-worker shield in the current event loop::

        async with run_shield(config) as shield:
            ... connect to shield.port, shield.admin_port ...
    """
    host, port = config.listen_addr
    sock = listen_socket(host, port, reuse_port=False)
    admin_sock = None
    a_host, a_port = config.admin_addr
    if admin:
        admin_sock = listen_socket(a_host, a_port, reuse_port=False)
    worker = Worker(config, wiring)
    try:
        await worker.start(sock, admin_sock)
        shield = Shield(worker, host, sock.getsockname()[1], a_host,
                        admin_sock.getsockname()[1] if admin_sock else 0)
        yield shield
    finally:
        if not worker.draining:
            await worker.stop()
        sock.close()
        if admin_sock is not None:
            admin_sock.close()
        # Let closed transports run their connection_lost callbacks.
        await asyncio.sleep(0)
