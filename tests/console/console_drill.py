"""A small drill for the console's browser test, run as its own process:
shoppers from 127.10.0.0/16 browse (a page and its stylesheet) for
``--calm`` seconds, then the drill's LOIC-style flood (shieldwall.drill.
attackers, sources on 127.64.0.0/10) joins them for ``--flood`` seconds.
Loopback only (the drill's netsafety checks the target), bounded in time.

Prints ``flood <unix time>`` when the flood starts and ``done`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from shieldwall.drill import netsafety
from shieldwall.drill.attackers import Attack, AttackSpec, Kind
from shieldwall.drill.httpclient import Connection, HTTPError
from shieldwall.drill.stats import AttackStats


async def shopper(host: str, port: int, source: str, stop_at: float, n: int) -> None:
    conn = Connection(host, port, source)
    agent = [("User-Agent", f"Mozilla/5.0 (X11; Linux x86_64) shopper/{n}"), ("Accept", "*/*")]
    i = 0
    while time.time() < stop_at:
        i += 1
        for path in (f"/product/{(n * 7 + i) % 40}", "/static/shop.css"):
            try:
                await conn.request("GET", path, agent, timeout=5.0)
            except HTTPError:
                conn.abort()
                conn = Connection(host, port, source)
        await asyncio.sleep(1.0)
    conn.abort()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shield", required=True, help="host:port")
    ap.add_argument("--calm", type=float, default=20.0)
    ap.add_argument("--flood", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=150.0)
    ap.add_argument("--sources", type=int, default=15)
    ap.add_argument("--shoppers", type=int, default=6)
    a = ap.parse_args()
    host, _, port_s = a.shield.rpartition(":")
    port = int(port_s)
    netsafety.check_target(host, port)
    stop_at = time.time() + a.calm + a.flood
    shoppers = [asyncio.create_task(shopper(host, port, src, stop_at, n))
                for n, src in enumerate(netsafety.sources(netsafety.SHOPPER_NET, a.shoppers))]
    await asyncio.sleep(a.calm)
    print(f"flood {time.time():.3f}", flush=True)
    t0 = time.monotonic()  # the drill's clock: seconds since the flood began

    def since() -> float:
        return time.monotonic() - t0

    attack = Attack(AttackSpec(Kind.FLOOD, a.rate, sources=a.sources), host, port, AttackStats(),
                    since, lambda: "flood", seed=13)
    await attack.run(a.flood)
    for t in shoppers:
        t.cancel()
    await asyncio.gather(*shoppers, return_exceptions=True)
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
