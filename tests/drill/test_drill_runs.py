"""Whole drills against an unprotected shop (`--against none`): the report
is schema-valid and counted from real requests; a flood really hurts; faults
show up in the report."""

from __future__ import annotations

import json
from pathlib import Path

from shieldwall.drill.report import render_html, schema_errors, write_all
from shieldwall.drill.runner import DrillOptions, run_drill
from shieldwall.drill.shoppers import ShopperProfile

FAST = ShopperProfile(think_s=(0.1, 0.3), timeout_s=6.0)


async def test_a_baseline_drill_against_none_writes_a_schema_valid_report(tmp_path: Path) -> None:
    report = await run_drill(DrillOptions("baseline", "none", 5.0, base_rate=3.0, out_dir=tmp_path,
                                          profile=FAST, grace=6.0, seed=1))
    assert schema_errors(report) == []
    legit = report["legit"]
    assert legit["requests"] > 20 and legit["goodput"] >= 0.95
    # every answered exchange of the shoppers was counted by the shop by its true client address
    assert report["backend_requests"]["shopper"] == legit["http_exchanges"]
    assert report["attack"] == {**report["attack"], "requests": 0, "reached_backend": 0, "sources": 0}
    assert report["orders"]["expected"] == legit["checkouts_completed"] == report["orders"]["recorded"]
    assert report["orders"]["duplicated"] == 0
    assert [p["verdict"] for p in report["phases"]] == [None]
    assert all(t["mode"] is None for t in report["timeline"])
    assert sum(t["legit_rps"] for t in report["timeline"]) == legit["requests"]
    paths = write_all(report, tmp_path / "r.json", tmp_path / "r.html")
    assert json.loads(paths["json"].read_text())["scenario"] == "baseline"
    labels = json.loads(paths["phases"].read_text())
    assert labels["phases"][0]["name"] == "shopping"
    page = paths["html"].read_text()
    assert "<svg" in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


async def test_a_flood_against_an_unprotected_shop_degrades_it(tmp_path: Path) -> None:
    report = await run_drill(DrillOptions("flood", "none", 12.0, base_rate=2.0, out_dir=tmp_path, profile=FAST,
                                          grace=6.0, seed=2))
    assert schema_errors(report) == []
    calm, flood, _after = report["phases"]
    assert flood["name"] == "flood"
    assert report["attack"]["sources"] >= 900
    assert report["attack"]["reached_backend"] > 0.5 * report["attack"]["requests"] - report["attack"]["skipped"]
    assert flood["legit_goodput"] < calm["legit_goodput"] - 0.1
    assert flood["legit"]["p99_ms"] > 2 * calm["legit"]["p99_ms"]


async def test_a_killed_and_restarted_backend_shows_in_the_report(tmp_path: Path) -> None:
    report = await run_drill(DrillOptions("backend-failure", "none", 12.0, base_rate=3.0, out_dir=tmp_path,
                                          profile=FAST, grace=7.0, seed=3))
    assert schema_errors(report) == []
    history = report["backends"]["backend0"]
    starts = [h["pid"] for h in history if h["event"] == "start"]
    kills = [h["pid"] for h in history if h["event"] == "kill"]
    assert len(starts) == 2 and starts[0] != starts[1] and kills[0] == starts[0]
    assert [h["event"] for h in report["backends"]["backend1"]][:3] == ["start", "freeze", "thaw"]
    events = [e["event"] for e in report["events"]]
    assert any(e.startswith("kill backend0") for e in events)
    assert any(e.startswith("restart backend0") for e in events)
    assert any(e.startswith("slow backend1") for e in events) and any(e.startswith("unslow backend1") for e in events)
    assert phases_slower(report)
    phases = {p["name"]: p for p in report["phases"]}
    assert phases["backend-killed"]["legit"]["failed"] > 0  # no shield: half the shoppers hit a dead server
    assert min(t["backends_up"] for t in report["timeline"] if t["backends_up"] is not None) <= 1
    assert phases["recovered"]["legit_goodput"] > phases["backend-killed"]["legit_goodput"]
    assert "backend-killed" in render_html(report)


async def test_a_drill_against_nginx_uses_its_rate_limits_and_stops_it(tmp_path: Path) -> None:
    import os

    report = await run_drill(DrillOptions("baseline", "nginx", 4.0, base_rate=3.0, out_dir=tmp_path,
                                          profile=FAST, grace=5.0, seed=5))
    assert schema_errors(report) == []
    assert report["legit"]["goodput"] >= 0.95
    conf = (tmp_path / "nginx" / "nginx.conf").read_text()
    assert "limit_req zone=perip" in conf and "limit_conn peraddr" in conf
    assert report["backend_requests"]["shopper"] == report["legit"]["http_exchanges"]
    assert Path(report["access_log"]).read_text().count("127.10.") >= report["legit"]["requests"]
    nginx = report["settings"]["front"]["processes"]["nginx"]
    assert [h["event"] for h in nginx] == ["start", "exit"]
    for p in [nginx[0]["pid"], *(h["pid"] for b in report["backends"].values() for h in b)]:
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {p} is still running after the drill")


def phases_slower(report: dict[str, object]) -> bool:
    """The slowed backend (+300 ms per query) made shoppers' p99 that slow, far
    above the calm phase's typical request. (Not above the calm p99: of some 30
    calm requests one that started just before the fault was served slowly,
    and a request counts in the phase it started in.)"""
    phases = {p["name"]: p for p in report["phases"]}  # type: ignore[attr-defined]
    slow = phases["backend-slow"]["legit"]["p99_ms"]
    return bool(slow >= 300 and slow > phases["calm"]["legit"]["p50_ms"] + 200)
