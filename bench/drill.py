"""Drills side by side: flood, randomized, flash-crowd and smart-bot against
none, nginx and shieldwall in one run; prints one JSON table.

Goals (issues 4 and 10): under a flood of 20x the shoppers' rate, shoppers
keep >= 99.5% goodput over the whole attack phase behind shieldwall with p99
at most twice the no-attack p99 (the calm phase of the same drill), at most
3% of the attack requests reach the shop, and the shield switches mode
within 2 s of the flood's start; where the unprotected shop and nginx fall
far below. Smart bots that all hold a pass (smart-bot@under_attack) leave
shoppers >= 99%; in a 10x flash crowd no shopper is refused.

Also measures the load generator's own ceiling (a flood against a trivial
sink server), so nobody mistakes a saturated generator for a strong shield.

    .venv/bin/python bench/drill.py [--duration 60] [--against none,nginx,shieldwall]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from shieldwall.drill.attackers import Attack, AttackSpec, Kind
from shieldwall.drill.procs import Lab, free_port, wait_http
from shieldwall.drill.runner import DrillOptions, run_drill
from shieldwall.drill.stats import AttackStats

SINK = r"""
import asyncio, sys
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.t.write(RESP * n)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await s.serve_forever()
asyncio.run(main())
"""


async def generator_ceiling(seconds: float = 5.0) -> dict[str, Any]:
    """The most requests per second the attack engine completes against a sink that costs ~nothing."""
    work = Path("out/bench-drill")
    work.mkdir(parents=True, exist_ok=True)
    with Lab(work) as lab:
        port = free_port()
        m = lab.start("sink", [sys.executable, "-c", SINK, str(port)])
        wait_http("127.0.0.1", port, "/", 10, m.proc)
        stats = AttackStats()
        t0 = time.monotonic()
        now = lambda: time.monotonic() - t0  # noqa: E731
        atk = Attack(AttackSpec(Kind.RANDOMIZED, 5000, sources=1000, max_inflight=256), "127.0.0.1", port,
                     stats, now, lambda: "ceiling", seed=1)
        await atk.run(seconds)
        tot = stats.total()
        return {"offered_rps": 5000, "sent_rps": round(tot.requests / seconds), "answered_rps":
                round(tot.answered / seconds), "skipped": tot.skipped, "sources": len(stats.sources)}


def phase_row(report: dict[str, Any], name: str) -> dict[str, Any]:
    phases = {p["name"]: p for p in report["phases"]}
    calm, hit = phases["calm"], phases[name]
    lg, base = hit["legit"] or {}, calm["legit"] or {}
    started = lg.get("checkouts_started", 0)
    return {
        "goodput": hit["legit_goodput"],
        "calm_goodput": calm["legit_goodput"],
        "p99_ms": lg.get("p99_ms"),
        "calm_p99_ms": base.get("p99_ms"),
        "p99_ratio": round(lg.get("p99_ms", 0) / base["p99_ms"], 2) if base.get("p99_ms") else None,
        "checkouts": f"{lg.get('checkouts_completed', 0)}/{started}",
        "checkout_ratio": round(lg.get("checkouts_completed", 0) / started, 4) if started else None,
        "legit_refused": lg.get("refused", 0),
        "legit_failed": lg.get("failed", 0),
        "challenges_solved": lg.get("challenges_solved", 0),
        "attack_requests": (hit.get("attack") or {}).get("requests", 0),
        "attack_reached_backend": hit.get("attack_reached_backend"),
        "attack_share_at_shop": (round(hit["attack_reached_backend"] / (hit.get("attack") or {})["requests"], 4)
                                 if hit.get("attack_reached_backend") is not None
                                 and (hit.get("attack") or {}).get("requests") else None),
        "mode_switch_s": (hit.get("mode_switch") or {}).get("after_s"),
        "mode_switch": (hit.get("mode_switch") or {}).get("words"),
        "challenged_requests": lg.get("challenged_requests"),
        "p99_ms_unchallenged": lg.get("p99_ms_unchallenged"),
        "generator_loop_lag": report["settings"].get("generator_loop_lag"),
        "reaction_s": hit.get("reaction_s"),
        "under_attack_after_s": hit.get("under_attack_after_s"),
        "goodput_after_reaction": hit.get("legit_goodput_after_reaction"),
        "p99_ms_after_reaction": hit.get("legit_p99_ms_after_reaction"),
        "verdict": hit.get("verdict"),
        "mode": hit.get("mode"),
        "orders": report["orders"],
    }


def goals(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 10's Done when, per drill behind shieldwall (the CPU points live in bench/guard.py)."""
    out: dict[str, Any] = {}
    for scenario in ("flood", "randomized"):
        r = rows.get(f"{scenario}/shieldwall")
        if r is None:
            continue
        out[f"{scenario}: goodput >= 0.995"] = r["goodput"] >= 0.995
        out[f"{scenario}: checkouts >= 0.99"] = r["checkout_ratio"] is not None and r["checkout_ratio"] >= 0.99
        out[f"{scenario}: p99 <= 2x calm"] = r["p99_ratio"] is not None and r["p99_ratio"] <= 2.0
        out[f"{scenario}: <= 3% of attack requests at the shop"] = (
            r["attack_share_at_shop"] is not None and r["attack_share_at_shop"] <= 0.03)
        out[f"{scenario}: mode switch <= 2 s"] = r["mode_switch_s"] is not None and r["mode_switch_s"] <= 2.0
    r = rows.get("smart-bot/shieldwall")
    if r is not None:
        out["smart-bot: goodput >= 0.99"] = r["goodput"] >= 0.99
    r = rows.get("flash-crowd/shieldwall")
    if r is not None:
        out["flash-crowd: no shopper refused"] = r["legit_refused"] == 0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0,
                    help="seconds per drill (the calm phase, 30%%, must outlast the detector warm-up)")
    ap.add_argument("--rate", type=float, default=2.0, help="shopper sessions per second (calm)")
    ap.add_argument("--against", default="none,nginx,shieldwall")
    ap.add_argument("--scenarios", default="flood,randomized,flash-crowd,smart-bot@under_attack",
                    help="comma-separated; NAME@MODE pins shieldwall's mode for that drill "
                         "(smart-bot@under_attack: every bot holds a pass)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("out/bench-drill"))
    ap.add_argument("--shield-mode", default=None, help="pin shieldwall's mode (e.g. under_attack)")
    ap.add_argument("--shield-toml", type=Path, default=None, help="TOML appended to shieldwall's config")
    a = ap.parse_args()
    result: dict[str, Any] = {"duration_s": a.duration, "shopper_sessions_per_s": a.rate,
                              "shield_toml": a.shield_toml.read_text() if a.shield_toml else "",
                              "generator_ceiling": asyncio.run(generator_ceiling())}
    rows: dict[str, dict[str, Any]] = {}
    for entry in a.scenarios.split(","):
        scenario, _, pin = entry.partition("@")
        for against in a.against.split(","):
            out = a.out / f"{scenario}-{against}"
            mode = (pin or a.shield_mode) if against == "shieldwall" else None
            try:
                report = asyncio.run(run_drill(DrillOptions(
                    scenario, against, a.duration, a.rate, out, seed=a.seed,
                    shield_mode=mode,
                    shield_toml=a.shield_toml.read_text() if a.shield_toml and against == "shieldwall" else "")))
            except Exception as exc:  # report the failure in the table, keep going
                rows[f"{scenario}/{against}"] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            (out / "report.json").write_text(json.dumps(report, indent=2))
            rows[f"{scenario}/{against}"] = {**phase_row(report, scenario), "shield_mode": mode}
            print(f"# {scenario}/{against}: {json.dumps(rows[f'{scenario}/{against}'])}", file=sys.stderr)
    for key, row in rows.items():  # side by side: each front's goodput as a multiple of the bare shop's
        bare = rows.get(key.split("/")[0] + "/none")
        if "error" not in row and bare and "error" not in bare and bare["goodput"]:
            row["goodput_x_none"] = round(row["goodput"] / bare["goodput"], 2)
    result["rows"] = rows
    result["goals_met"] = goals({k: v for k, v in rows.items() if "error" not in v})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
