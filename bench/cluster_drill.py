"""Shoppers' goodput over the whole flood phase, three shield nodes (issue 12),
repeated, with ranges, and where the lost requests went.

Runs ``shieldwall drill SCENARIO --against shieldwall --nodes N`` for each
scenario (default: ``flood``, ``flood-node-killed``, ``flood-redis-killed``)
``--runs`` times, and with ``--single`` the same ``flood`` drill against one
shield in the same session (the peer: the same machine, the same minutes).
Per run it prints the flood phase's goodput, the goodput before the mode
switched and from the fault onward, and every second of the flood phase in
which a shopper's request was not good: how many were asked, how many were
good, how many were answered late (> 2 s), and what the shields' access
logs say of the shoppers' requests that second (challenged, refused,
queued > 0.5 s). The drill's own event-loop lag is printed beside each run:
a run whose load generator lagged by seconds measured the generator, not
the shield (``valid``: max lag under ``--max-lag-ms``).

    .venv/bin/python bench/cluster_drill.py [--runs 3] [--duration 40] [--nodes 3] [--single] [--seed N] [--shield-toml PATH]
        [--scenarios flood,flood-node-killed,flood-redis-killed] [--out out/cluster-drill]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from shieldwall.drill.runner import DrillOptions, Live, run_drill
from shieldwall.drill.stats import OK_WITHIN_S

SHOPPERS = "127.10."
_LINE = re.compile(r'^(\S+) - - \[([^\]]+)\] "[^"]*" (\d+) .* rt=(\S+) .* d=(\S+) ')


def _shield_side(out: Path, t0: float) -> dict[int, dict[str, int]]:
    """Shoppers' requests per drill second as the shields logged them."""
    per: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for log in sorted(out.glob("access*.log")):
        with open(log, errors="replace") as fh:
            for line in fh:
                m = _LINE.match(line)
                if m is None or not m.group(1).startswith(SHOPPERS):
                    continue
                ts = dt.datetime.strptime(m.group(2), "%d/%b/%Y:%H:%M:%S %z").timestamp()
                k = per[int(ts - t0)]
                k["logged"] += 1
                status, rt, action = int(m.group(3)), float(m.group(4)), m.group(5)
                if action == "challenge":
                    k["challenged"] += 1
                elif status in (403, 429, 503):
                    k[f"refused_{status}"] += 1
                if rt > 0.5:
                    k["shield_rt_gt_0.5s"] += 1
    return per


def _load() -> list[float]:
    """The machine's load average (1, 5, 15 min): a timing means little without it."""
    return [round(x, 2) for x in os.getloadavg()]


def _per_node(report: dict[str, Any], start: int) -> list[dict[str, Any]]:
    """Each node's share of the flood and of the shoppers, when it named the
    flood (its own detector, the cluster's view; seconds after the flood
    began), how fast it refused the probe's ban, and lines it logged as the
    balancer (a client whose address was lost)."""
    cl = report["settings"]["front"].get("cluster") or {}
    nodes = cl.get("nodes", [])
    attack = sum(n.get("attack_requests", 0) for n in nodes) or 1
    shop = sum(n.get("shopper_requests", 0) for n in nodes) or 1
    ban = (cl.get("ban_probe") or {}).get("refused_after_s") or {}
    return [{"name": n["name"], "requests_logged": n["requests_logged"],
             "attack_share": round(n.get("attack_requests", 0) / attack, 3),
             "shopper_share": round(n.get("shopper_requests", 0) / shop, 3),
             "cluster_named_ddos_after_s": None if n["first_cluster_ddos_s"] is None
             else n["first_cluster_ddos_s"] - start,
             "own_view_named_ddos_after_s": None if n["first_local_ddos_s"] is None
             else n["first_local_ddos_s"] - start,
             "seconds_on_local_view": n["seconds_on_local_view"],
             "ban_refused_after_s": ban.get(n["name"]),
             "logged_as_balancer": n["logged_as_balancer"]} for n in nodes]


def _one(scenario: str, nodes: int, duration: float, out: Path, seed: int | None,
         shield_toml: str = "") -> dict[str, Any]:
    live = Live()
    opts = DrillOptions(scenario, "shieldwall", duration, out_dir=out, nodes=nodes, seed=seed,
                        shield_toml=shield_toml)
    started = time.time()
    load_before = _load()
    report = asyncio.run(run_drill(opts, live))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    legit = live.legit
    assert legit is not None
    flood = next(p for p in report["phases"] if p["attacks"])
    start, end = int(flood["start_s"]), int(flood["end_s"])
    switch = None if flood["reaction_s"] is None else start + int(flood["reaction_s"])
    fault = next((e["t"] for e in report["events"]
                  if e["event"].startswith(("kill-node", "kill-redis"))), None)
    late: dict[int, int] = defaultdict(int)
    for t, lat in legit.latencies:
        if lat > OK_WITHIN_S:
            late[int(t)] += 1
    shield = _shield_side(out, report["clock_zero_unix"])

    def goodput(a: int, b: int) -> float | None:
        req = sum(legit.requests.at(t) for t in range(a, b))
        return round(sum(legit.good.at(t) for t in range(a, b)) / req, 4) if req else None

    lost = []
    for t in range(start, end):
        asked, good = legit.requests.at(t), legit.good.at(t)
        if asked > good:
            lost.append({"t": t, "asked": asked, "good": good, "late": late.get(t, 0),
                         "mode": report["timeline"][t]["mode"] if t < len(report["timeline"]) else None,
                         "shield": dict(shield.get(t, {}))})
    summ = flood["legit"]
    cl = report["settings"]["front"].get("cluster") or {}
    return {
        "scenario": scenario, "nodes": nodes, "started_utc": dt.datetime.fromtimestamp(started, dt.UTC)
        .strftime("%H:%M"), "out": str(out),
        "flood_goodput": flood["legit_goodput"], "requests": summ["requests"], "ok": summ["ok"],
        "late": summ["slow"], "refused": summ["refused"], "failed": summ["failed"],
        "errors": report["errors"],
        "switch_s": flood["reaction_s"],
        "switch_exact_s": (flood.get("mode_switch") or {}).get("after_s"),
        "goodput_before_switch": goodput(start, switch) if switch is not None else None,
        "goodput_from_switch": goodput(switch, end) if switch is not None else None,
        "fault_s": None if fault is None else round(fault - start, 1),
        "goodput_from_fault": goodput(int(fault), end) if fault is not None else None,
        "p99_ms": summ["p99_ms"], "orders": report["orders"],
        "attack_at_shop": flood["attack_reached_backend"],
        "generator_lag_ms": report["settings"]["generator_loop_lag"],
        "ddos_named_s": {n["name"]: {"own": None if n["first_local_ddos_s"] is None
                                     else n["first_local_ddos_s"] - start,
                                     "cluster": None if n["first_cluster_ddos_s"] is None
                                     else n["first_cluster_ddos_s"] - start}
                         for n in cl.get("nodes", [])},
        "ban_refused_after_s": (cl.get("ban_probe") or {}).get("refused_after_s"),
        "per_node": _per_node(report, start),
        # the shop and the access logs name every shopper (through the balancer, PROXY v2):
        # shopper addresses the drill used / seen in the nodes' logs; lines and shop requests
        # from neither a shopper nor an attacker (the balancer's address), health probes apart
        "real_addresses": {"shopper_addresses_used": report["legit"].get("client_addresses"),
                           "shopper_addresses_in_logs": cl.get("shoppers"),
                           "ipv6_shopper_addresses_in_logs": cl.get("ipv6_shoppers"),
                           "sessions_by_access": report["legit"].get("access"),
                           "logged_as_balancer": sum(n["logged_as_balancer"] for n in cl.get("nodes", [])),
                           "shop_requests": report["backend_requests"]},
        "load_before": load_before, "load_after": _load(),
        "lost_seconds": lost,
    }


def _range(values: list[float | None]) -> list[float] | None:
    vals = [v for v in values if v is not None]
    return [min(vals), max(vals)] if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=40.0)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--scenarios", default="flood,flood-node-killed,flood-redis-killed")
    ap.add_argument("--single", action="store_true", help="also the flood drill against one shield")
    ap.add_argument("--max-lag-ms", type=float, default=500.0)
    ap.add_argument("--out", type=Path, default=Path("out/cluster-drill"))
    ap.add_argument("--seed", type=int, default=None, help="each run's seed is SEED + run index")
    ap.add_argument("--shield-toml", type=Path, default=None,
                    help="TOML appended to every shield node's config (e.g. a [guard.admission] sizing)")
    args = ap.parse_args()
    plan = [(s, args.nodes) for s in args.scenarios.split(",")]
    if args.single:
        plan.append(("flood", 1))
    extra = "\n" + args.shield_toml.read_text() if args.shield_toml else ""
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        for scenario, nodes in plan:  # interleaved: each scenario sees the machine's load alike
            seed = None if args.seed is None else args.seed + i
            r = _one(scenario, nodes, args.duration, args.out / f"{scenario}-n{nodes}-{i}", seed, extra)
            r["valid"] = r["generator_lag_ms"]["max_ms"] < args.max_lag_ms
            runs.append(r)
            print(json.dumps({k: r[k] for k in ("scenario", "nodes", "started_utc", "flood_goodput", "switch_s", "switch_exact_s",
                                                "goodput_before_switch", "goodput_from_fault",
                                                "p99_ms", "attack_at_shop", "generator_lag_ms", "valid",
                                                "per_node", "real_addresses", "load_before",
                                                "load_after")}), flush=True)
    summary = {}
    for scenario, nodes in plan:
        mine = [r for r in runs if r["scenario"] == scenario and r["nodes"] == nodes]
        valid = [r for r in mine if r["valid"]]
        summary[f"{scenario} x{nodes}"] = {
            "runs": len(mine), "valid_runs": len(valid),
            "flood_goodput": _range([r["flood_goodput"] for r in mine]),
            "flood_goodput_valid_runs": _range([r["flood_goodput"] for r in valid]),
            "switch_s": _range([r["switch_s"] for r in mine]),
            "switch_exact_s": _range([r["switch_exact_s"] for r in mine]),
            "goodput_before_switch": _range([r["goodput_before_switch"] for r in mine]),
            "goodput_from_fault": _range([r["goodput_from_fault"] for r in mine]),
            "p99_ms": _range([r["p99_ms"] for r in mine]),
            "orders_lost": sum(r["orders"]["lost"] for r in mine),
            "generator_lag_max_ms": _range([r["generator_lag_ms"]["max_ms"] for r in mine]),
            "cluster_named_ddos_after_s": _range([n["cluster_named_ddos_after_s"] for r in mine
                                                  for n in r["per_node"]]),
            "attack_share_per_node": _range([n["attack_share"] for r in mine for n in r["per_node"]]),
            "ban_refused_after_s": _range([n["ban_refused_after_s"] for r in mine for n in r["per_node"]]),
            "logged_as_balancer": sum(r["real_addresses"]["logged_as_balancer"] for r in mine),
            "shop_requests_other": sum(r["real_addresses"]["shop_requests"]["other"] for r in mine),
            "load": _range([x for r in mine for x in (r["load_before"][0], r["load_after"][0])]),
        }
    print(json.dumps({"summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
