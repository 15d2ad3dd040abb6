"""Time from the first failed check to the first alert, in a real run.

A shop on loopback, three local probes on 127.0.0.1/2/3 (2 of 3, N rounds),
real Apprise posting to a local webhook. The shop is stopped at a random
phase of the round grid, N times; each time we measure shop-stop -> page
arrival and compare it with the bound the issue sets: one check interval
(until the next check) + the confirmation rounds + under a second.

    .venv/bin/python bench/monitor.py [--interval 1] [--rounds 2] [--outages 5]

Prints JSON. Only loopback traffic; every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "monitor"))

from monitor_helpers import Shop, Webhook

from shieldwall.monitor._config import validate
from shieldwall.monitor._service import Monitor


async def main(interval: float, rounds: int, outages: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    shop, hook = Shop(), Webhook()
    data = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    settings = validate(
        {
            "monitor": {"listen": "127.0.0.1:0", "data_dir": str(data), "round_grace": 0.05},
            "probes": {
                "local": [{"name": f"p{i}", "source_address": f"127.0.0.{i}"} for i in (1, 2, 3)],
                "quorum": 2,
                "confirm_rounds": rounds,
            },
            "checks": [{"name": "shop", "url": shop.url, "interval": interval, "timeout": interval * 0.8}],
            "alerts": {"targets": {"chat": hook.url("chat")}, "realert_every": "1h"},
        }
    )
    mon = Monitor(settings, data_dir=data)
    mon.bind()
    task = asyncio.create_task(mon.run())
    samples: list[float] = []
    try:
        for k in range(outages):
            while mon.checks["shop"].health.value != "up":
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0, interval))  # a random phase of the round grid
            before = len(hook.to("chat"))
            shop.down()
            t_fail = time.time()
            while len(hook.to("chat")) == before:
                await asyncio.sleep(0.005)
            samples.append(hook.to("chat")[before].at - t_fail)
            shop.up()
            while len(hook.to("chat")) < before + 2:  # the recovery message
                await asyncio.sleep(0.01)
            print(f"outage {k + 1}/{outages}: first alert after {samples[-1]:.3f}s", file=sys.stderr)
    finally:
        mon.stop()
        await task
        shop.close()
        hook.close()
    bound = interval + rounds * interval + 1.0
    return {
        "what": "first failed check -> first alert (real Apprise json:// to a loopback webhook)",
        "interval_s": interval,
        "confirm_rounds": rounds,
        "quorum": "2 of 3",
        "outages": outages,
        "seconds": {
            "min": round(min(samples), 3),
            "median": round(statistics.median(samples), 3),
            "max": round(max(samples), 3),
        },
        "bound_s": bound,
        "max_over_bound": round(max(samples) / bound, 3),
        "samples": [round(s, 3) for s in samples],
    }


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--outages", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.interval, a.rounds, a.outages, a.seed)), indent=2))
