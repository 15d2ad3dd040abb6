"""Issue 9, "the same live": through the real shield, a 10x crowd of mostly new
visitors, half of them behind a carrier's NAT or on IPv6, keeps the mode normal
and refuses no shopper; a low-and-slow flood from 3,000 addresses, each one far
under every per-address limit, is named ddos within 10 s and mitigated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shieldwall.drill.report import schema_errors
from shieldwall.drill.runner import DrillOptions, run_drill


def _phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report["phases"] if p["name"] == name)


def first_verdict_after(report: dict[str, Any], phase: str, verdict: str) -> float | None:
    """Seconds from the phase's start to the first sample of the shield's
    detector saying ``verdict`` (None: it never did during the phase)."""
    p = _phase(report, phase)
    for t in report["timeline"]:
        if p["start_s"] <= t["t"] < p["end_s"] and t["verdict"] == verdict:
            return float(t["t"]) - float(p["start_s"])
    return None


async def test_a_mobile_heavy_flash_crowd_keeps_the_mode_normal_and_no_shopper_is_refused(tmp_path: Path) -> None:
    report = await run_drill(DrillOptions("flash-crowd-nat-ipv6", "shieldwall", 45.0, out_dir=tmp_path,
                                          grace=6.0, seed=11))
    assert schema_errors(report) == []
    access = report["legit"]["access"]
    # half the sessions came through a carrier NAT (2 addresses) or over IPv6
    assert access.get("carrier_nat", 0) >= 0.15 * sum(access.values())
    assert access.get("ipv6", 0) >= 0.15 * sum(access.values())
    # the shield and the shop saw the IPv6 addresses (PROXY v2 from the lab's edge)
    log = Path(report["access_log"]).read_text()
    assert sum(1 for ln in log.splitlines() if ln.startswith("2001:db8:") and '" 200 ' in ln) > 50
    crowd = _phase(report, "flash-crowd")
    assert crowd["legit"]["sessions"] >= 5 * _phase(report, "calm")["legit"]["sessions"]
    modes = {t["mode"] for t in report["timeline"] if t["mode"] is not None}
    assert modes == {"normal"}, f"the crowd raised the mode: {modes}"
    assert first_verdict_after(report, "flash-crowd", "ddos") is None
    assert report["legit"]["refused"] == 0
    # (a backend's admission queue may still challenge a few new shoppers for a
    # second or two of overload, in any mode: not counted against the detector)
    assert crowd["legit_goodput"] >= 0.95


async def test_a_low_and_slow_flood_from_3000_addresses_is_named_ddos_within_10_s_and_mitigated(tmp_path: Path) -> None:
    report = await run_drill(DrillOptions("low-and-slow", "shieldwall", 50.0, out_dir=tmp_path,
                                          grace=6.0, seed=12))
    assert schema_errors(report) == []
    attack = report["attack"]
    assert attack["sources"] >= 2400  # a bot whose sends were all skipped (in-flight cap) is not counted
    named = first_verdict_after(report, "low-and-slow", "ddos")
    assert named is not None and named <= 10.0, f"named ddos after {named} s"
    flood = _phase(report, "low-and-slow")
    assert flood["verdict"] == "ddos"
    # mitigated: most of the attack was refused or challenged, little reached the shop,
    # and the shoppers kept their goodput
    assert max(attack["challenged"], attack["refused"]) >= 0.7 * attack["answered"]
    assert attack["reached_backend"] <= 0.2 * attack["requests"]
    assert flood["legit_goodput"] >= 0.85
    assert report["orders"]["lost"] == 0
