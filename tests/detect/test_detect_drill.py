"""The analyzer over real lab logs (the drill's, not our generator's): nginx in
front of the demo shop, with the drill's own phase labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shieldwall.detect.analyze import analyze
from shieldwall.detect.detector import Incident

DRILL = Path(__file__).resolve().parents[1] / "data" / "drill"


def _run(scenario: str) -> tuple[dict[str, Any], list[Incident]]:
    labels = json.loads((DRILL / scenario / "phases.json").read_text())
    report = analyze([DRILL / scenario / "access.log.gz"], "combined")
    assert report.stats.unparsed == 0
    return labels, report.incidents


def _phase(labels: dict[str, Any], name: str) -> tuple[float, float]:
    p = next(p for p in labels["phases"] if p["name"] == name)
    return p["start_unix"], p["end_unix"]


def test_drill_flood_is_ddos_flood_within_5_s_and_nothing_else() -> None:
    labels, incidents = _run("flood")
    start, end = _phase(labels, "flood")
    assert [(i.verdict, i.kind) for i in incidents] == [("ddos", "flood")]
    inc = incidents[0]
    assert inc.detected_at - start <= 5.0
    assert start - 1 <= inc.start and inc.end <= end + 5
    assert inc.top_prefixes(1)[0][0].startswith("127.64.")  # the attackers' network


def test_drill_flash_crowd_is_a_flash_crowd_never_ddos() -> None:
    labels, incidents = _run("flash-crowd")
    start, _end = _phase(labels, "flash-crowd")
    assert [i.verdict for i in incidents] == ["flash_crowd"]
    assert start - 1 <= incidents[0].start <= start + 5


def test_drill_frozen_backend_is_backend_failure_within_2_s() -> None:
    labels, incidents = _run("backend-failure")
    freeze = next(e["unix"] for e in labels["events"] if e["event"].startswith("freeze"))
    # The killed backend (phase "backend-killed") is invisible here: nginx fails over to
    # the other one and every request succeeds, so no incident is the right answer.
    killed_start, killed_end = _phase(labels, "backend-killed")
    assert not [i for i in incidents if i.start < killed_end - 1 and i.end > killed_start]
    assert [i.verdict for i in incidents] == ["backend_failure"]
    assert 0 <= incidents[0].detected_at - freeze <= 2.0
    assert "traffic stalled" in incidents[0].evidence[0]
