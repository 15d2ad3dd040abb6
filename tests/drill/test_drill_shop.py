"""The demo shop: idempotent checkout across backends, true-client counting,
counters that survive SIGKILL, and a capacity that really runs out."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from lab_procs import Procs
from shieldwall.drill import counters
from shieldwall.drill.httpclient import Connection
from shieldwall.drill.procs import free_port, wait_http
from shieldwall.drill.shop import init_db, order_summary, true_client

_last_started: list[subprocess.Popen[bytes]] = []


def _start_shops(procs: Procs, tmp_path: Path, n: int = 2, *extra: str) -> list[int]:
    init_db(tmp_path / "shop.db")
    (tmp_path / "counters").mkdir(exist_ok=True)
    ports = [free_port() for _ in range(n)]
    for i, port in enumerate(ports):
        p = procs.python("-m", "shieldwall.drill.shop", "--port", str(port), "--db", str(tmp_path / "shop.db"),
                         "--counters-dir", str(tmp_path / "counters"), "--name", f"b{i}", *extra)
        wait_http("127.0.0.1", port, "/healthz", 20, p)
        _last_started.append(p)
    return ports


async def test_checkout_retries_with_one_key_write_one_order_across_backends(procs: Procs, tmp_path: Path) -> None:
    ports = _start_shops(procs, tmp_path)
    body = b"session=alice&items=3-4"

    async def attempt(port: int) -> tuple[int, dict[str, object]]:
        import json

        c = Connection("127.0.0.1", port, "127.10.0.7")
        r = await c.request("POST", "/checkout", [("Idempotency-Key", "key-alice-1"),
                                                  ("Content-Type", "application/x-www-form-urlencoded")], body)
        c.close()
        return r.status, json.loads(r.body)

    first = await asyncio.gather(*(attempt(ports[i % 2]) for i in range(8)))
    again = [await attempt(ports[i % 2]) for i in range(4)]
    results = first + again
    assert sorted(s for s, _ in results).count(201) == 1, results
    assert {d["order"] for _, d in results} == {results[0][1]["order"]}
    summary = order_summary(tmp_path / "shop.db")
    assert (summary.attempts, summary.keys, summary.orders, summary.duplicated) == (12, 1, 1, 0)


async def test_a_new_key_for_the_same_intent_shows_up_as_a_duplicate(procs: Procs, tmp_path: Path) -> None:
    (port,) = _start_shops(procs, tmp_path, 1)
    for key in ("k1", "k2"):  # a client that forgot the key on retry
        c = Connection("127.0.0.1", port)
        r = await c.request("POST", "/checkout", [("Idempotency-Key", key)], b"session=bob&items=1")
        c.close()
        assert r.status == 201
    assert order_summary(tmp_path / "shop.db").duplicated == 1


async def test_checkout_without_an_idempotency_key_is_refused(procs: Procs, tmp_path: Path) -> None:
    (port,) = _start_shops(procs, tmp_path, 1)
    c = Connection("127.0.0.1", port)
    r = await c.request("POST", "/checkout", [], b"session=x&items=1")
    c.close()
    assert r.status == 400 and b"Idempotency-Key" in r.body
    assert order_summary(tmp_path / "shop.db").orders == 0


def test_true_client_is_the_last_forwarded_hop_only_behind_a_trusted_proxy() -> None:
    trusted = frozenset({"127.0.0.1"})
    assert true_client("127.0.0.1", "127.10.0.9, 127.64.0.3", trusted) == "127.64.0.3"
    assert true_client("127.64.0.3", "127.10.0.9", trusted) == "127.64.0.3"  # spoofed header ignored
    assert true_client("127.0.0.1", None, trusted) == "127.0.0.1"


async def test_counters_by_true_client_survive_a_sigkill(procs: Procs, tmp_path: Path) -> None:
    (port,) = _start_shops(procs, tmp_path, 1)
    for src, n in (("127.10.0.5", 3), ("127.64.0.9", 5)):
        c = Connection("127.0.0.1", port, src)
        for _ in range(n):
            assert (await c.request("GET", "/img/logo.png")).status == 200
        c.close()
    proxied = Connection("127.0.0.1", port)  # as a proxy: peer 127.0.0.1, client in X-Forwarded-For
    assert (await proxied.request("GET", "/img/x.png", [("X-Forwarded-For", "127.10.0.1, 127.64.1.1")])).status == 200
    proxied.close()
    shop = _last_started[-1]
    os.kill(shop.pid, signal.SIGKILL)
    shop.wait(5)
    got = counters.read_all(tmp_path / "counters")
    assert (got["shopper"], got["attacker"]) == (3, 6)


async def test_the_database_cap_makes_a_flood_queue(procs: Procs, tmp_path: Path) -> None:
    (port,) = _start_shops(procs, tmp_path, 1, "--db-slots", "1", "--page-ms", "50")
    loop = asyncio.get_running_loop()

    async def one() -> float:
        c = Connection("127.0.0.1", port)
        t = loop.time()
        r = await c.request("GET", "/", timeout=20)
        c.close()
        assert r.status == 200
        return loop.time() - t

    times = await asyncio.gather(*(one() for _ in range(20)))
    # 20 queries on one slot at 50 ms each: the last waits for the other 19
    assert max(times) >= 0.9


def test_the_shop_module_runs_as_a_script() -> None:
    out = subprocess.run([sys.executable, "-m", "shieldwall.drill.shop", "--help"], capture_output=True, text=True,
                         check=True)
    assert "--db-slots" in out.stdout
