"""Each attack has the shape of the flood it emulates, from many addresses,
within its bounds (observed by a capturing server on loopback)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from shieldwall.drill import netsafety
from shieldwall.drill.attackers import Attack, AttackSpec, Kind
from shieldwall.drill.stats import AttackStats

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Capture:
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    """(source address, request target, headers) of every complete request head."""
    open_now: int = 0
    most_open: int = 0
    partial_bytes: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await reader.read(4096)
                    if not chunk:
                        self.partial_bytes += len(head)
                        return
                    head += chunk
                    if b"\r\n\r\n" not in head:
                        self.partial_bytes += len(chunk)
                text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
                line, *rest = text.split("\r\n")
                hdrs = {k.lower(): v for k, v in (h.split(": ", 1) for h in rest if ": " in h)}
                self.requests.append((peer, line.split(" ")[1], hdrs))
                if int(hdrs.get("content-length", "0")) > 1000:
                    continue  # a slow POST: keep reading its trickle
                writer.write(OK)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self.open_now -= 1
            writer.close()


async def _run(kind: Kind, seconds: float, **kw: object) -> tuple[Capture, AttackStats]:
    cap = Capture()
    server = await asyncio.start_server(cap.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t0 = time.monotonic()
    stats = AttackStats()
    spec = AttackSpec(kind, **kw)  # type: ignore[arg-type]
    atk = Attack(spec, "127.0.0.1", port, stats, lambda: time.monotonic() - t0, lambda: "attack", seed=1)
    await atk.run(seconds)
    server.close()
    return cap, stats


async def test_a_get_flood_repeats_one_request_from_a_thousand_addresses() -> None:
    cap, stats = await _run(Kind.FLOOD, 2.0, rate=800.0, sources=1000)
    # A loaded CI machine may not reach the full rate (at load 7-8 on 2 cores,
    # beside another test process, it sent under 400 in 2 s): no throughput
    # floor here (bench/drill.py measures the generator's ceiling); what is
    # sent must still spread over the addresses (one source per request
    # until all are used).
    assert len(cap.requests) >= 100
    assert {t for _, t, _ in cap.requests} == {"/"}
    sources = {s for s, _, _ in cap.requests}
    assert len(sources) >= 0.9 * min(1000, len(cap.requests))
    assert {netsafety.who(s) for s in sources} == {"attacker"}
    assert stats.total().requests <= 800 * 2.0 + 10  # the rate is a ceiling, not a wish


async def test_a_randomized_flood_rotates_paths_queries_and_agents() -> None:
    cap, _ = await _run(Kind.RANDOMIZED, 1.5, rate=400.0, sources=1000)
    targets = [t for _, t, _ in cap.requests]
    assert len(set(targets)) > 0.9 * len(targets) and all("?" in t for t in targets)
    assert len({h.get("user-agent") for _, _, h in cap.requests}) >= 5
    assert len({h.get("referer") for _, _, h in cap.requests}) >= 4
    assert len({t.split("?")[0].split("/")[1] for t in targets}) >= 4


async def test_cache_busting_asks_the_expensive_search_for_new_things() -> None:
    cap, _ = await _run(Kind.CACHE_BUST, 1.0, rate=300.0, sources=200)
    targets = [t for _, t, _ in cap.requests]
    assert targets and all(t.startswith("/search?q=") for t in targets)
    assert len(set(targets)) == len(targets)


async def test_slowloris_holds_connections_open_without_finishing_a_request() -> None:
    cap, stats = await _run(Kind.SLOWLORIS, 2.5, rate=400.0, sources=300, connections=300, trickle_s=0.5)
    assert cap.requests == []  # not one request head was ever completed
    assert cap.most_open >= 250
    assert cap.partial_bytes > 0 and len({*stats.sources}) >= 250


async def test_a_slow_post_sends_its_body_a_byte_at_a_time() -> None:
    cap, _ = await _run(Kind.SLOW_POST, 2.0, rate=400.0, sources=200, connections=200, trickle_s=0.5)
    assert cap.most_open >= 150
    assert cap.requests and all(t == "/checkout" for _, t, _ in cap.requests)
    assert {h["content-length"] for _, _, h in cap.requests} == {"100000"}


async def test_low_and_slow_volunteers_each_send_a_page_now_and_then_like_a_browser() -> None:
    # 400 volunteers, one request every 0.5-1.0 s each (scaled down from 5-20 s), for 3 s
    cap, stats = await _run(Kind.LOW_AND_SLOW, 3.0, rate=0.0, sources=400, interval_s=(0.5, 1.0))
    per_source: dict[str, int] = {}
    for s, _, _ in cap.requests:
        per_source[s] = per_source.get(s, 0) + 1
    assert len(per_source) >= 350  # nearly every volunteer took part
    # no one is a heavy hitter: at most one request per interval (3 s / 0.5 s + the first)
    assert max(per_source.values()) <= 7
    assert {netsafety.who(s) for s in per_source} == {"attacker"}
    targets = [t for _, t, _ in cap.requests]
    assert all(not t.startswith(("/static/", "/img/")) for t in targets)  # pages, never assets
    agents = {h.get("user-agent", "") for _, _, h in cap.requests}
    assert len(agents) >= 5 and all(a.startswith("Mozilla/5.0 (") and "LOIC" not in a for a in agents)
    assert all(h.get("referer") for _, _, h in cap.requests)
    assert not any("cookie" in h for _, _, h in cap.requests)
    assert stats.total().requests >= len(cap.requests)


def test_low_and_slow_stays_under_the_rate_cap_by_stretching_its_interval() -> None:
    from shieldwall.drill.attackers import MAX_RATE

    spec = AttackSpec(Kind.LOW_AND_SLOW, 0, sources=20000, interval_s=(0.1, 0.2)).bounded()
    assert spec.mean_rate <= MAX_RATE + 1e-6
    assert AttackSpec(Kind.LOW_AND_SLOW, 0, sources=3000).bounded().mean_rate == 3000 / 12.5
