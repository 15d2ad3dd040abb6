"""Per-address limits across shield nodes vs one node's (issue 12).

One client address offers ``--rps`` requests per second for ``--seconds``
against a page limit of ``--rate``/s with a burst of ``--burst``:

- ``one``: one guard process takes every request;
- ``cluster``: N guard processes (separate OS processes, each its own
  GuardRuntime and Redis sync, as N nodes are) share one redis-server and
  each takes 1/N of the requests (a balancer spreading connections).

No request waits for Redis (the decision is local; buckets are refilled
from the shared counters every sync interval). Prints JSON: allowed
requests in each run and the cluster's ratio to one node's. Goal: within
10 %.

    .venv/bin/python bench/cluster_limits.py [--nodes 3] [--rps 90] [--rate 10] [--burst 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from shieldwall.drill.procs import Lab
from shieldwall.drill.redis_lab import start_single
from shieldwall.guard.decision import Action, RequestFacts
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings

CLIENT = "198.51.100.20"


def _node(url: str, rps: float, rate: float, burst: float, seconds: float, t0: float) -> int:
    async def run() -> int:
        settings: dict[str, Any] = {"allow_crawlers": False,
                                    "limits": {"default_route": {"name": "page", "rate": rate, "burst": burst}}}
        if url:
            settings["redis"] = {"url": url}
        rt = GuardRuntime.from_settings(GuardSettings.model_validate(settings))
        await rt.start()
        try:
            await asyncio.sleep(max(0.0, t0 - time.time()))
            facts = RequestFacts(client=CLIENT, method="GET", path="/", query="")
            allowed = 0
            n = int(rps * seconds)
            for i in range(n):
                await asyncio.sleep(max(0.0, t0 + i / rps - time.time()))
                if rt.gate.decide(facts).action is Action.ALLOW:
                    allowed += 1
            return allowed
        finally:
            await rt.stop()

    return asyncio.run(run())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--rps", type=float, default=90.0)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--burst", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Lab(Path(tmp)) as lab:
        port = start_single(lab, Path(tmp))
        url = f"redis://127.0.0.1:{port}"
        with ProcessPoolExecutor(a.nodes) as pool:
            t0 = time.time() + 3.0
            one = pool.submit(_node, "", a.rps, a.rate, a.burst, a.seconds, t0).result()
            t0 = time.time() + 3.0
            parts = [pool.submit(_node, url, a.rps / a.nodes, a.rate, a.burst, a.seconds, t0)
                     for _ in range(a.nodes)]
            per_node = [f.result() for f in parts]
    cluster = sum(per_node)
    ideal = a.burst + a.rate * a.seconds
    print(json.dumps({
        "offered": int(a.rps * a.seconds), "limit_rate": a.rate, "burst": a.burst, "seconds": a.seconds,
        "ideal_allowed": ideal, "one_node_allowed": one, "nodes": a.nodes,
        "cluster_allowed": cluster, "per_node": per_node,
        "cluster_to_one": round(cluster / one, 3) if one else None,
        "goal": "cluster within 10% of one node",
        "met": bool(one) and abs(cluster / one - 1) <= 0.10,
    }, indent=2))


if __name__ == "__main__":
    main()
