"""A drill through the real shield (`--against shieldwall`): the shield is
started from a config the lab writes, shoppers pass through it, its access
log lands next to the report, and its admin API is sampled."""

from __future__ import annotations

import json
from pathlib import Path

from shieldwall.drill.report import schema_errors, write_all
from shieldwall.drill.runner import DrillOptions, run_drill
from shieldwall.drill.shoppers import ShopperProfile

FAST = ShopperProfile(think_s=(0.1, 0.3), timeout_s=6.0)


async def test_a_baseline_drill_through_the_shield(tmp_path: Path) -> None:
    report = await run_drill(DrillOptions("baseline", "shieldwall", 5.0, base_rate=3.0, out_dir=tmp_path,
                                          profile=FAST, grace=6.0, seed=4))
    assert schema_errors(report) == []
    legit = report["legit"]
    assert legit["requests"] > 20 and legit["goodput"] >= 0.95
    # the shield forwarded the shoppers with their address in X-Forwarded-For: the shop saw shoppers
    assert report["backend_requests"]["shopper"] > 0
    assert report["backend_requests"]["shopper"] <= legit["http_exchanges"]
    log = Path(report["access_log"])
    assert log.parent == tmp_path
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("127.10.")]
    assert len(lines) >= legit["requests"] * 0.9
    assert all(" rt=" in ln for ln in lines)
    paths = write_all(report, tmp_path / "report.json", tmp_path / "timeline.html")
    labels = json.loads(paths["phases"].read_text())
    assert labels["access_log"] == str(log)
    assert (tmp_path / "shieldwall.toml").read_text().count("[[backends]]") == 2


async def test_under_attack_shoppers_pass_the_challenge_and_the_flood_does_not_reach_the_shop(tmp_path: Path) -> None:
    report = await run_drill(DrillOptions("flood", "shieldwall", 10.0, base_rate=3.0, out_dir=tmp_path,
                                          profile=FAST, grace=6.0, seed=6, shield_mode="under_attack"))
    assert schema_errors(report) == []
    assert {t["mode"] for t in report["timeline"] if t["mode"] is not None} == {"under_attack"}
    flood = next(p for p in report["phases"] if p["name"] == "flood")
    assert flood["legit"]["challenges_solved"] > 0
    assert flood["legit_goodput"] >= 0.9
    assert report["attack"]["challenged"] > 0.5 * report["attack"]["answered"]
    assert report["attack"]["reached_backend"] < 0.05 * report["attack"]["requests"]
