"""Helpers for the monitor's tests. Real servers: a shop that can go down, come back,
hang, crawl, fail for one client address or serve the wrong page; and a
webhook receiver standing in for the phone (Apprise posts JSON to it)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shieldwall.monitor._config import MonitorSettings, validate
from shieldwall.monitor._quorum import ProbeResult
from shieldwall.monitor._service import Monitor


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


class Shop:
    """A tiny shop on 127.0.0.1. ``mode``: ok, error, slow, hang, wrong."""

    GOOD = b"<html><body><h1>Example shop</h1><button>Add to cart</button></body></html>"
    WRONG = b"<html><body><h1>Down for maintenance</h1></body></html>"

    def __init__(self) -> None:
        self.mode = "ok"
        self.slow_for = 0.5
        self.fail_for: set[str] = set()  # client addresses that get a 503
        self.hits: dict[str, int] = {}
        self._release = threading.Event()
        self._server: _Server | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        shop = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                client = self.client_address[0]
                shop.hits[client] = shop.hits.get(client, 0) + 1
                mode = shop.mode
                if client in shop.fail_for:
                    mode = "error"
                if mode == "hang":
                    shop._release.wait(20)
                    return
                if mode == "slow":
                    time.sleep(shop.slow_for)
                status, body = (503, b"busy") if mode == "error" else (200, shop.WRONG if mode == "wrong" else shop.GOOD)
                self.send_response(status)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(body)

        return H

    def up(self) -> None:
        assert self._server is None
        self._release.clear()
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused until :meth:`up`."""
        assert self._server is not None
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def close(self) -> None:
        if self._server is not None:
            self.down()
        self._release.set()


@dataclass(frozen=True)
class Delivery:
    at: float  # time.time() on arrival
    path: str
    title: str
    message: str
    type: str
    dedup: str = ""


def folded(got: list[Delivery]) -> list[str]:
    """The types a receiver that folds duplicates by key keeps, in order."""
    seen: dict[str, str] = {}
    for d in got:
        seen.setdefault(d.dedup or f"#{len(seen)}", d.type)
    return list(seen.values())


class Webhook:
    """Where the pages land: records every JSON post Apprise makes."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []
        self.fail = False
        self.delay = 0.0  # seconds to hold each POST open (a slow provider)
        hook = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                data = json.loads(self.rfile.read(n) or b"{}")
                if not hook.fail:
                    hook.got.append(
                        Delivery(
                            time.time(),
                            self.path,
                            data.get("title", ""),
                            data.get("message", ""),
                            data.get("type", ""),
                            self.headers.get("x-dedup-key", ""),
                        )
                    )
                if hook.delay:
                    time.sleep(hook.delay)
                self.send_response(500 if hook.fail else 200)
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = _Server(("127.0.0.1", 0), H)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.got if d.path == f"/{path}"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class Page:
    at: float  # the receiver's clock on arrival
    title: str
    message: str
    type: str
    dedup_header: str
    dedup_field: str


class Receiver:
    """A notification endpoint that can refuse connections and later accept.

    Refusing is real: the port is bound but not listening, so a connect gets
    a reset (ECONNREFUSED) while nobody else can take the port; :meth:`accept`
    starts listening on that same socket. ``clock`` stamps arrivals (the
    test's clock, when it drives one)."""

    def __init__(self, *, accepting: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.got: list[Page] = []
        self.clock = clock
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._server: _Server | None = None
        if accepting:
            self.accept()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def accept(self) -> None:
        hook = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                data = json.loads(self.rfile.read(n) or b"{}")
                hook.got.append(
                    Page(
                        hook.clock(),
                        data.get("title", ""),
                        data.get("message", ""),
                        data.get("type", ""),
                        self.headers.get("x-dedup-key", ""),
                        str(data.get("dedup_key", "")),
                    )
                )
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        server = _Server(("127.0.0.1", self.port), H, bind_and_activate=False)
        server.socket.close()
        server.socket = self._sock
        server.server_activate()  # listen(): from now on connections are accepted
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def folded(self) -> dict[str, list[str]]:
        """What a receiver that folds duplicates keeps: dedup key -> types seen."""
        out: dict[str, list[str]] = {}
        for p in self.got:
            out.setdefault(p.dedup_header, []).append(p.type)
        return out

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        else:
            self._sock.close()


INTERVAL = 0.3
TIMEOUT = 0.25


def settings_for(shop: Shop, webhook: Webhook, data: Path, **over: Any) -> MonitorSettings:
    """Three local probes on three loopback addresses, 2 of 3, 2 rounds."""
    cfg: dict[str, Any] = {
        "monitor": {
            "listen": "127.0.0.1:0",
            "data_dir": str(data),
            "api_token": "test-token-123456",
            "round_grace": 0.04,
        },
        "probes": {
            "local": [
                {"name": "p1", "source_address": "127.0.0.1"},
                {"name": "p2", "source_address": "127.0.0.2"},
                {"name": "p3", "source_address": "127.0.0.3"},
            ],
            "quorum": 2,
            "confirm_rounds": 2,
        },
        "checks": [{"name": "shop", "url": shop.url, "interval": INTERVAL, "timeout": TIMEOUT, "body_contains": "Add to cart"}],
        "alerts": {
            "targets": {"chat": webhook.url("chat"), "sms": webhook.url("sms")},
            "escalation": [{"after": "0s", "notify": ["chat"]}, {"after": "1s", "notify": ["sms"]}],
            "realert_every": "1h",
        },
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            cfg.setdefault(section, {})[field] = value
        else:
            cfg[section] = value
    return validate(cfg)


class Running:
    def __init__(self, mon: Monitor, task: asyncio.Task[None]) -> None:
        self.mon = mon
        self.task = task

    async def stop(self) -> None:
        self.mon.stop()
        await asyncio.wait_for(self.task, 10)


async def start_monitor(settings: MonitorSettings, data: Path) -> Running:
    mon = Monitor(settings, data_dir=data)
    mon.bind()
    task = asyncio.create_task(mon.run())
    return Running(mon, task)


async def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``pred`` (bounded); returns the time it became true."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return time.time()
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# -- a monitor on the test's clock, its rounds closed by hand -------------------------

T0 = 1_790_000_000.0  # 2026-09-21 (UTC)
TOKEN = "delivery-token-0123456789"


class Wall:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def one_probe(data: Path, targets: dict[str, str], **alerts: Any) -> MonitorSettings:
    return validate(
        {
            "monitor": {"listen": "127.0.0.1:0", "data_dir": str(data), "api_token": TOKEN},
            "probes": {"local": [{"name": "here"}], "confirm_rounds": 2},
            "checks": [{"name": "shop", "url": "http://127.0.0.1:9/", "interval": "1s", "timeout": "0.5s"}],
            "alerts": {"targets": targets, "realert_every": "1h", **alerts},
        }
    )


def second(mon: Monitor, wall: Wall, *, up: bool) -> None:
    """One round of the one probe at the wall clock's second, closed at once."""
    mon.accept(ProbeResult("shop", "here", wall.t, up, "" if up else "status 503"))
    mon.close_round("shop")
