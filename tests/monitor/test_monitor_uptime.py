"""Uptime told straight: only watched time counts, unknown time is grey, and
the page says from how many places the shop is checked, in true words.

The monitor runs on the test's clock (its rounds closed by hand at each fake
second), so "watched for 20 s" costs milliseconds; the report is the real
CLI over the real database, the page the real app."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest
from monitor_helpers import T0, Receiver, Wall, one_probe, second
from typer.testing import CliRunner

from shieldwall.cli import app
from shieldwall.monitor._config import validate
from shieldwall.monitor._history import Coverage, daily_bars, month_report
from shieldwall.monitor._incident import Incident
from shieldwall.monitor._service import Monitor
from shieldwall.monitor._web import build_app


async def test_a_check_watched_20s_with_8s_down_is_60_percent_up_in_the_report_and_on_the_page(
    tmp_path: Path,
) -> None:
    wall = Wall()
    hook = Receiver(accepting=True, clock=wall)
    mon = Monitor(one_probe(tmp_path, {"chat": hook.url()}), data_dir=tmp_path, wall=wall)
    try:
        for s in range(20):  # rounds at 0..19 s: watched [0 s, 20 s); down from 2 s to 10 s
            wall.t = T0 + s
            second(mon, wall, up=not 2 <= s < 10)
            await mon.deliver_due()
        wall.t = T0 + 3600  # an hour later, the monitor long stopped: unknown, not up
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(mon)), base_url="http://m") as c:
            page = (await c.get("/")).text
    finally:
        mon.close()
        hook.close()
    month = dt.datetime.fromtimestamp(T0, dt.UTC).strftime("%Y-%m")
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["incidents", "report", "--month", month, "--data", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert re.search(r"observed\W+20s\b", out.output), out.output
    assert re.search(r"uptime\W+60\.000%", out.output), out.output
    assert re.search(r"minutes down\W+0\.1\b", out.output), out.output  # 8 s
    legend = re.search(r'<span class="uptime">([^<]*)</span>', page)
    assert legend is not None and legend.group(1) == "60.00% uptime over 20s watched"
    day = dt.datetime.fromtimestamp(T0, dt.UTC).date().isoformat()
    bar = re.search(rf'<div class="bar (\w+)" data-day="{day}"[^>]*title="([^"]*)"', page)
    assert bar is not None and bar.group(1) == "partial" and "60.00% up over 20s watched" in bar.group(2)
    yesterday = (dt.datetime.fromtimestamp(T0, dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    assert f'data-day="{yesterday}" data-state="nodata"' in page  # before the first check: grey
    assert "Checked from 1 place" in page and "several places" not in page
    assert "99.99" not in page


def test_coverage_joins_rounds_and_a_gap_starts_a_new_span() -> None:
    cov = Coverage(slack=0.5)
    assert cov.note(100.0, 1.0) == (True, (100.0, 101.0))
    assert cov.note(101.02, 1.0) == (False, (100.0, 102.02))  # the next round, a little late
    assert cov.note(200.0, 1.0) == (True, (200.0, 201.0))  # the monitor was stopped in between


def test_unwatched_time_is_neither_up_nor_down() -> None:
    day = 86400.0
    t = dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp()
    # watched one hour on day 1 and one hour on day 3, an incident from day 1 23:30 to day 3 00:30
    watched = [(t + 23 * 3600, t + day), (t + 2 * day, t + 2 * day + 3600)]
    inc = Incident(1, "shop", t + 23.5 * 3600, t + 23.5 * 3600, "x", ended_at=t + 2 * day + 1800)
    rep = month_report([inc], "2026-10", observed=watched, now=t + 10 * day)
    assert rep.observed_seconds == pytest.approx(7200)
    assert rep.down_seconds == pytest.approx(3600)  # only the watched halves count
    assert rep.uptime_pct == pytest.approx(50.0)
    bars = daily_bars([inc], now=t + 3 * day - 1, observed=watched, days=3)
    assert [(b.state, b.uptime_pct) for b in bars] == [("partial", 50.0), ("nodata", None), ("partial", 50.0)]


def test_the_page_says_how_many_places_really_check() -> None:
    def settings(remote: int, quorum: int) -> object:
        return validate(
            {
                "probes": {
                    "local": [{"name": "p1", "source_address": "127.0.0.1"}, {"name": "p2", "source_address": "127.0.0.2"}],
                    "remote": [{"name": f"r{i}", "token": f"token-{i}-0123456789abcdef"} for i in range(remote)],
                    "quorum": quorum,
                },
                "checks": [{"name": "shop", "url": "https://shop.example/"}],
                "alerts": {"targets": {"chat": "json://127.0.0.1/hook"}},
            }
        )

    from shieldwall.monitor._statuspage import _where

    one = settings(0, 2)
    assert one.places_for(one.checks[0]) == 1  # type: ignore[attr-defined]
    assert "Checked from 1 place by 2 probes; an outage is declared when 2 of them agree." in _where(
        {"places": 1, "probes": 2, "quorum": 2}
    )
    three = settings(2, 3)
    assert three.places_for(three.checks[0]) == 3  # type: ignore[attr-defined]
