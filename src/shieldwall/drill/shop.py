"""The demo shop: a small, real, deliberately finite web shop.

It is what the drills protect. Pages cost time on a simulated database with a
concurrency cap (a semaphore and a service time), so an unprotected shop
really falls over under a flood: requests queue for the database, the queue
outgrows the clients' patience, and everyone times out. Like a threaded
server it also holds a bounded number of connections (``--max-connections``),
which is what slowloris and slow POST exhaust.

Orders go to a shared SQLite file (WAL) with a UNIQUE idempotency key, so a
drill can prove that no order was lost or written twice. Each process counts
requests by *true* client (the last X-Forwarded-For entry when the peer is a
trusted proxy, else the peer address) into a counter file that survives
SIGKILL (see :mod:`shieldwall.drill.counters`).

Run one backend: ``python -m shieldwall.drill.shop --port 9001 --db shop.db
--counters-dir DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from shieldwall.drill import netsafety
from shieldwall.drill.counters import CounterFile

PRODUCTS = {i: f"Product {i}" for i in range(1, 41)}
CSS = ("body{font-family:sans-serif;margin:2em}" + ".p{padding:4px}" * 200).encode()
JS = ("/* shop */" + "function f(){return 1}\n" * 150).encode()
IMAGE = bytes(range(256)) * 16  # 4 KiB "picture"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


@dataclass
class ShopSettings:
    db_path: Path
    counters: Path | None = None
    db_slots: int = 2
    """How many queries the simulated database runs at once."""
    page_ms: float = 25.0
    search_ms: float = 80.0
    checkout_ms: float = 20.0
    queue_timeout_s: float = 10.0
    """How long a request waits for a database slot before a 503 (a pool timeout)."""
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    name: str = "shop"


@dataclass
class _State:
    settings: ShopSettings
    sem: asyncio.Semaphore
    extra_ms: float = 0.0
    counters: CounterFile | None = None
    db: sqlite3.Connection | None = None
    db_lock: threading.Lock = field(default_factory=threading.Lock)


def init_db(path: Path) -> None:
    """Create the orders schema (idempotent; safe from several processes)."""
    con = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE,"
            " session TEXT NOT NULL, items TEXT NOT NULL, backend TEXT NOT NULL, created REAL NOT NULL)"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS attempts (id INTEGER PRIMARY KEY, idem_key TEXT NOT NULL,"
            " session TEXT NOT NULL, backend TEXT NOT NULL, replay INTEGER NOT NULL, created REAL NOT NULL)"
        )
    finally:
        con.close()


@dataclass(frozen=True)
class OrderSummary:
    attempts: int
    """Checkout POSTs that reached the database."""
    keys: int
    """Distinct idempotency keys among those attempts."""
    orders: int
    """Rows in the orders table."""
    sessions: int
    """Distinct shopper sessions (checkout intents) with an order."""
    duplicated: int
    """Orders beyond the first for one intent: must be 0."""
    order_sessions: frozenset[str]


def order_summary(path: Path) -> OrderSummary:
    con = sqlite3.connect(path, timeout=10)
    try:
        attempts, keys = con.execute("SELECT COUNT(*), COUNT(DISTINCT idem_key) FROM attempts").fetchone()
        orders, sessions = con.execute("SELECT COUNT(*), COUNT(DISTINCT session) FROM orders").fetchone()
        names = frozenset(r[0] for r in con.execute("SELECT DISTINCT session FROM orders"))
    finally:
        con.close()
    return OrderSummary(attempts, keys, orders, sessions, orders - sessions, names)


def true_client(peer: str, xff: str | None, trusted: frozenset[str]) -> str:
    """The client a request is really from: the last X-Forwarded-For hop when
    the peer is a trusted proxy (that hop was appended by the proxy itself;
    earlier ones are whatever the client claimed)."""
    if peer in trusted and xff:
        last = xff.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return peer


class _Counting:
    """ASGI middleware: count every request by true client before routing."""

    def __init__(self, app: ASGIApp, state: _State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "http" and self.state.counters is not None:
            peer = scope["client"][0] if scope.get("client") else ""
            xff = None
            for k, v in scope["headers"]:
                if k == b"x-forwarded-for":
                    xff = v.decode("latin-1") if xff is None else xff + "," + v.decode("latin-1")
            client = true_client(peer, xff, self.state.settings.trusted_proxies)
            scope["shop.client"] = client
            who = netsafety.who(client)
            if who == "other" and (scope.get("path") == "/healthz" or client == netsafety.LAB_PROBE):
                who = "probe"  # a health check or the lab's ban probe, not a client the shield failed to name
            self.state.counters.add(who)
        await self.app(scope, receive, send)


def _page(title: str, body: str, extra_img: str = "") -> str:
    img = f'<img src="{extra_img}">' if extra_img else ""
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{title}</title><link rel=stylesheet href=/static/shop.css>"
        f"<script src=/static/shop.js></script></head><body><img src=/img/logo.png>{img}"
        f"<h1>{title}</h1>{body}</body></html>"
    )


def create_app(settings: ShopSettings) -> ASGIApp:
    state = _State(settings=settings, sem=asyncio.Semaphore(settings.db_slots))
    if settings.counters is not None:
        state.counters = CounterFile(settings.counters)

    async def db(ms: float) -> bool:
        """One query on the simulated database; False when the pool timed out."""
        try:
            await asyncio.wait_for(state.sem.acquire(), settings.queue_timeout_s)
        except TimeoutError:
            return False
        try:
            await asyncio.sleep((ms + state.extra_ms) / 1000.0)
        finally:
            state.sem.release()
        return True

    def busy() -> Response:
        return Response("database busy\n", status_code=503, headers={"Retry-After": "1"})

    async def home(request: Request) -> Response:
        if not await db(settings.page_ms):
            return busy()
        items = "".join(f'<li><a href="/product/{i}">{n}</a></li>' for i, n in list(PRODUCTS.items())[:12])
        return HTMLResponse(_page("Shieldwall demo shop", f"<ul>{items}</ul>"))

    async def product(request: Request) -> Response:
        try:
            pid = int(request.path_params["pid"])
        except ValueError:
            return Response("no such product\n", status_code=404)
        if pid not in PRODUCTS:
            return Response("no such product\n", status_code=404)
        if not await db(settings.page_ms):
            return busy()
        form = (f'<form method=post action=/cart/add><input type=hidden name=product value={pid}>'
                "<button>Add to cart</button></form>")
        return HTMLResponse(_page(PRODUCTS[pid], form, f"/img/p{pid}.png"))

    async def search(request: Request) -> Response:
        q = request.query_params.get("q", "")
        if not await db(settings.search_ms):
            return busy()
        hits = [n for n in PRODUCTS.values() if q.lower() in n.lower()][:10]
        body = "".join(f"<li>{h}</li>" for h in hits)
        return HTMLResponse(_page(f"Search: {quote(q)}", f"<ul>{body}</ul>"),
                            headers={"Cache-Control": "public, max-age=30"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "shop.css":
            return Response(CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
        if name == "shop.js":
            return Response(JS, media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=3600"})
        return Response("not found\n", status_code=404)

    async def image(request: Request) -> Response:
        return Response(IMAGE, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    async def cart_add(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("latin-1"))
        pid = (form.get("product") or [""])[0]
        if not pid.isdigit() or int(pid) not in PRODUCTS:
            return Response("bad product\n", status_code=400)
        cart = [c for c in request.cookies.get("cart", "").split("-") if c]
        cart.append(pid)
        resp = RedirectResponse("/cart", status_code=303)
        resp.set_cookie("cart", "-".join(cart[-20:]), httponly=True, samesite="lax")
        return resp

    async def cart(request: Request) -> Response:
        items = [c for c in request.cookies.get("cart", "").split("-") if c]
        lis = "".join(f"<li>{PRODUCTS.get(int(c), '?')}</li>" for c in items if c.isdigit())
        return HTMLResponse(_page("Your cart", f"<ul>{lis}</ul><form method=post action=/checkout>"
                                  "<button>Buy</button></form>"))

    def write_order(key: str, session: str, items: str) -> tuple[int, bool]:
        assert state.db is not None
        with state.db_lock:
            con = state.db
            now = time.time()
            con.execute("BEGIN IMMEDIATE")
            try:
                cur = con.execute(
                    "INSERT INTO orders (idem_key, session, items, backend, created) VALUES (?,?,?,?,?)"
                    " ON CONFLICT(idem_key) DO NOTHING", (key, session, items, settings.name, now))
                replay = cur.rowcount == 0
                (oid,) = con.execute("SELECT id FROM orders WHERE idem_key=?", (key,)).fetchone()
                con.execute("INSERT INTO attempts (idem_key, session, backend, replay, created)"
                            " VALUES (?,?,?,?,?)", (key, session, settings.name, int(replay), now))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return int(oid), replay

    async def checkout(request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        if not key or len(key) > 128:
            return JSONResponse({"error": "an Idempotency-Key header (1-128 chars) is required"}, 400)
        form = parse_qs((await request.body()).decode("latin-1"))
        session = (form.get("session") or [key])[0][:128]
        items = request.cookies.get("cart", "") or (form.get("items") or [""])[0]
        if not items:
            return JSONResponse({"error": "the cart is empty"}, 400)
        if not await db(settings.checkout_ms):
            return busy()
        oid, replay = await asyncio.to_thread(write_order, key, session, items[:400])
        if state.counters is not None:
            state.counters.add("checkout_attempts")
            if replay:
                state.counters.add("checkout_replays")
        resp = JSONResponse({"order": oid, "replay": replay}, status_code=200 if replay else 201)
        resp.delete_cookie("cart")
        return resp

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "backend": settings.name, "pid": os.getpid()})

    def internal(request: Request) -> bool:
        """Lab controls answer only direct (unproxied) loopback callers."""
        peer = request.client.host if request.client else ""
        return peer not in settings.trusted_proxies or "x-forwarded-for" not in request.headers

    async def lab_slow(request: Request) -> Response:
        if not internal(request):
            return Response("not found\n", status_code=404)
        try:
            state.extra_ms = max(0.0, min(10_000.0, float(request.query_params.get("ms", "0"))))
        except ValueError:
            return JSONResponse({"error": "ms must be a number of milliseconds"}, 400)
        return JSONResponse({"extra_ms": state.extra_ms})

    async def lab_info(request: Request) -> Response:
        if not internal(request):
            return Response("not found\n", status_code=404)
        return JSONResponse({"pid": os.getpid(), "backend": settings.name, "extra_ms": state.extra_ms,
                             "db_slots": settings.db_slots})

    async def startup() -> None:
        init_db(settings.db_path)
        state.db = sqlite3.connect(settings.db_path, timeout=10, isolation_level=None,
                                   check_same_thread=False)
        state.db.execute("PRAGMA busy_timeout=10000")
        # WAL with synchronous=NORMAL: a commit survives the process being
        # SIGKILLed (the drill's faults kill processes, not the machine) without
        # waiting for the disk, whose fsync on a shared machine took 0.4-2.5 s
        # at times and made the checkout, not the shield, the drill's p99.
        state.db.execute("PRAGMA synchronous=NORMAL")

    routes = [
        Route("/", home),
        Route("/product/{pid}", product),
        Route("/search", search),
        Route("/static/{name}", static),
        Route("/img/{name}", image),
        Route("/cart/add", cart_add, methods=["POST"]),
        Route("/cart", cart),
        Route("/checkout", checkout, methods=["POST"]),
        Route("/healthz", health),
        Route("/_lab/slow", lab_slow, methods=["POST"]),
        Route("/_lab/info", lab_info),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await startup()
        yield

    return _Counting(Starlette(routes=routes, lifespan=lifespan), state)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description="the shieldwall demo shop (one backend process)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--counters-dir", type=Path)
    p.add_argument("--name", default="")
    p.add_argument("--db-slots", type=int, default=2)
    p.add_argument("--page-ms", type=float, default=25.0)
    p.add_argument("--search-ms", type=float, default=80.0)
    p.add_argument("--checkout-ms", type=float, default=20.0)
    p.add_argument("--max-connections", type=int, default=200)
    a = p.parse_args(argv)
    name = a.name or f"{a.host}:{a.port}"
    counters = a.counters_dir / f"counters-{a.port}-{os.getpid()}.bin" if a.counters_dir else None
    settings = ShopSettings(db_path=a.db, counters=counters, db_slots=a.db_slots, page_ms=a.page_ms,
                            search_ms=a.search_ms, checkout_ms=a.checkout_ms, name=name)
    config = uvicorn.Config(create_app(settings), host=a.host, port=a.port, loop="uvloop", http="httptools",
                            lifespan="on", access_log=False, log_level="warning",
                            limit_concurrency=a.max_connections, timeout_keep_alive=5)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
