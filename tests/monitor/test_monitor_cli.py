"""`shieldwall incidents ...` over a real SQLite file, `ack` against a real
running monitor, and the config rules with their exact messages."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from monitor_helpers import Shop, Webhook, settings_for, wait_until
from typer.testing import CliRunner

from shieldwall.cli import app
from shieldwall.monitor._config import ConfigError, quick_start, validate
from shieldwall.monitor._delivery import RetryPolicy, new_outgoing, record_outcome
from shieldwall.monitor._escalation import Page, PageKind
from shieldwall.monitor._history import daily_bars, month_report
from shieldwall.monitor._incident import Incident
from shieldwall.monitor._store import Store

T = dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp()  # month start
DAY = 86400.0


def seed(data: Path) -> Store:
    store = Store.in_dir(data)
    store.note_check("shop", "http://shop/", T - 10 * DAY)
    store.observe("shop", (T - 10 * DAY, T + 40 * DAY), new=True)  # watched all along
    store.set_meta("revenue_per_minute", "50")
    store.set_meta("currency", "EUR")
    # 10 minutes down, detected after 60 s; then 30 minutes, detected after 30 s, acked
    store.save_incident(Incident(1, "shop", T + 2 * DAY, T + 2 * DAY + 60, "p1: status 503; p2: status 503",
                                 ("p1", "p2"), ended_at=T + 2 * DAY + 600, verdict="ddos", verdict_kind="flood"))
    store.save_incident(Incident(2, "shop", T + 5 * DAY, T + 5 * DAY + 30, "p1: timeout after 10s",
                                 ("p1", "p2", "p3"), ended_at=T + 5 * DAY + 1800, acked_at=T + 5 * DAY + 100,
                                 acked_by="alice"))
    page = new_outgoing(2, Page("step:0", PageKind.ALERT, ("chat",), T + 5 * DAY + 30, 0), instance="t", now=T + 5 * DAY + 30)
    record_outcome(page, "chat", ok=True, error="", now=T + 5 * DAY + 31, policy=RetryPolicy())
    store.save_outgoing(page, title="DOWN: shop", body="body")
    return store


def test_month_report_figures_from_the_incidents(tmp_path: Path) -> None:
    store = seed(tmp_path)
    rep = month_report(store.incidents(), "2026-10", observed=store.observed(), now=T + 40 * DAY,
                       revenue_per_minute=50)
    assert rep.minutes_down == pytest.approx(40.0)
    assert rep.revenue_at_risk == pytest.approx(2000.0)
    assert rep.uptime_pct == pytest.approx(100 * (1 - 2400 / (31 * DAY)))
    assert rep.mttd == pytest.approx(45.0) and rep.mttr == pytest.approx(1200.0)
    assert len(rep.incidents) == 2 and rep.longest == pytest.approx(1800)
    empty = month_report(store.incidents(), "2026-09", observed=store.observed(), now=T + 40 * DAY)
    assert empty.incidents == () and empty.uptime_pct == 100.0 and empty.observed_seconds == pytest.approx(10 * DAY)
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_report([], "2026-13", observed=[], now=T)


def test_daily_bars_mark_down_partial_up_and_nodata() -> None:
    incs = [
        Incident(1, "shop", T + 0.5 * DAY, T + 0.5 * DAY, "x", ended_at=T + 0.5 * DAY + 600),
        Incident(2, "shop", T + 2 * DAY + 100, T + 2 * DAY + 100, "y", ended_at=T + 2 * DAY + 7300),
    ]
    bars = daily_bars(incs, now=T + 3 * DAY + 10, observed=[(T - 2 * DAY, T + 3 * DAY + 10)], days=90)
    assert len(bars) == 90 and bars[-1].day == "2026-10-04"
    assert [b.state for b in bars[-7:]] == ["nodata", "up", "up", "partial", "up", "down", "up"]
    assert bars[-4].down_seconds == pytest.approx(600)


def test_incidents_list_show_and_report_read_the_database(tmp_path: Path) -> None:
    seed(tmp_path).close()
    run = CliRunner(env={"COLUMNS": "200"}).invoke
    out = run(app, ["incidents", "list", "--data", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "ddos/flood" in out.output and "p1: timeout after 10s" in out.output and "30m 00s" in out.output
    bare = run(app, ["incidents", "--data", str(tmp_path)])
    assert bare.exit_code == 0 and "Incidents (2 shown)" in bare.output
    show = run(app, ["incidents", "show", "2", "--data", str(tmp_path)])
    assert show.exit_code == 0, show.output
    assert "alice" in show.output and "step:0" in show.output and "detected in 30s" in show.output
    rep = run(app, ["incidents", "report", "--month", "2026-10", "--data", str(tmp_path)])
    assert rep.exit_code == 0, rep.output
    text = re.sub(r"\s+", " ", rep.output)
    assert "minutes down │ 40.0" in text
    assert "revenue at risk │ 2,000.00 EUR" in text
    assert "mean time to detect (MTTD) │ 45s" in text and "mean time to recover (MTTR) │ 20m 00s" in text
    assert "incidents │ 2" in text
    other = run(app, ["incidents", "report", "--month", "2026-10", "--revenue-per-minute", "10", "--data", str(tmp_path)])
    assert "400.00 EUR" in other.output
    bad = run(app, ["incidents", "report", "--month", "October", "--data", str(tmp_path)])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
    nothing = run(app, ["incidents", "show", "9", "--data", str(tmp_path)])
    assert nothing.exit_code == 1 and "no incident #9" in nothing.output
    missing = run(app, ["incidents", "list", "--data", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "no monitor data" in missing.output


def test_ack_says_clearly_when_the_monitor_is_not_running(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["incidents", "ack", "1", "--data", str(tmp_path)])
    assert out.exit_code == 1 and "the monitor is not running" in out.output
    (tmp_path / "monitor.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "token": "t"}))
    out = CliRunner().invoke(app, ["incidents", "ack", "1", "--data", str(tmp_path)])
    assert out.exit_code == 1 and "not running or not reachable at http://127.0.0.1:9" in out.output
    assert "nothing was acknowledged" in out.output


async def test_ack_from_the_cli_reaches_the_running_monitor(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    alerts = {
        "targets": {"chat": webhook.url("chat"), "sms": webhook.url("sms")},
        "escalation": [{"after": "0s", "notify": ["chat"]}, {"after": "6s", "notify": ["sms"]}],
    }
    mon = await monitors(settings_for(shop, webhook, tmp_path, alerts=alerts), tmp_path)
    shop.down()
    chat_at = await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the first page")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shieldwall.cli", "incidents", "ack", "1", "--by", "bob", "--data", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "incident #1 (shop) acknowledged by bob" in out.decode()
    inc = mon.mon.store.incident(1)
    assert inc is not None and inc.acked_by == "bob"
    assert time.time() < chat_at + 6, "the CLI took longer than the SMS delay; cannot judge"
    await asyncio.sleep(max(0.0, chat_at + 6.5 - time.time()))
    assert webhook.to("sms") == []  # the SMS step (6 s) never went out


# -- config ------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "checks": [{"name": "shop", "url": "https://shop.example/"}],
    "alerts": {"targets": {"chat": "json://127.0.0.1/hook"}},
}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate(data, "monitor.toml")
    return e.value.problems


def test_a_minimal_config_gets_sensible_defaults() -> None:
    s = validate(BASE)
    assert s.checks[0].interval == 30 and s.checks[0].timeout == 10
    assert s.probes.names() == ["local"] and s.quorum() == 1 and s.probes.confirm_rounds == 2
    pol = s.policy()
    assert [st.targets for st in pol.steps] == [("chat",)] and pol.realert_every == 600


def test_cross_table_problems_are_listed_together() -> None:
    data = {
        "probes": {"local": [{"name": "a"}, {"name": "b"}], "quorum": 3},
        "checks": [
            {"name": "shop", "url": "https://shop.example/", "interval": "5s", "timeout": "5s", "probes": ["zz"]},
            {"name": "shop", "url": "http://shop.example/", "tls_min_days": 14},
        ],
        "alerts": {
            "targets": {"chat": "json://127.0.0.1/hook", "sms": "not a url"},
            "escalation": [{"after": "2m", "notify": ["sms"]}, {"after": "0s", "notify": ["pager"]}],
        },
        "maintenance": [{"start": "2026-11-02T02:00:00Z", "end": "2026-11-02T01:00:00Z"}],
    }
    assert problems(data) == [
        "probes.quorum: must be between 1 and the number of probes, 2 (got 3)",
        "checks[0].name: check names must be unique (got 'shop' twice)",
        "checks[0].timeout: must be shorter than the interval (5s) (got 5s)",
        "checks[0].probes: unknown probe 'zz'; configured probes: a, b",
        "checks[1].tls_min_days: needs an https:// URL with verify_tls = true (use ca_file for a private CA) "
        "(got url='http://shop.example/', verify_tls=True)",
        "alerts.targets.sms: expected an Apprise URL like json://host/path or tgram://token/chat (got 'not a url')",
        "alerts.escalation[1].notify: unknown target 'pager'; targets: chat, sms",
        "alerts.escalation: steps must be in order of their delay (got [120.0, 0.0])",
        "maintenance[0].end: must be after start 2026-11-02T02:00:00+00:00 (got 2026-11-02T01:00:00+00:00)",
    ]


def test_field_problems_name_the_path_value_and_what_is_accepted() -> None:
    data = {
        "monitor": {"listen": "nowhere", "colour": "red"},
        "checks": [{"name": "shop!", "url": "https://x/", "interval": "fast", "method": "POST"}],
    }
    got = problems(data)
    assert "monitor.colour: unknown key (got 'red'); accepted keys here: listen, data_dir, api_token, title, revenue_per_minute, currency, shield_admin, shield_token, round_grace" in got
    assert any(p.startswith("checks[0].name: expected a name made of letters, digits") and "(got 'shop!')" in p for p in got)
    assert any(p.startswith("checks[0].interval: expected a duration like") and "(got 'fast')" in p for p in got)
    assert "checks[0].method: Input should be 'GET' or 'HEAD' (got 'POST')" in got
    assert "alerts: required, missing" not in got  # alerts has defaults; its emptiness is a cross check
    assert problems({"checks": [{"url": "https://x/"}]})[0] == (
        "checks[0].name: required, missing (letters, digits, '_', '.', '-')"
    )
    assert problems({})[0].startswith("checks: required, missing (add at least one [[checks]] table")


def test_quick_start_builds_the_same_settings() -> None:
    s = quick_start(["https://shop.example/"], every="30s", notify=["json://127.0.0.1/a", "json://127.0.0.1/b"],
                    data_dir="d", listen="127.0.0.1:0")
    assert s.checks[0].name == "shop.example" and s.checks[0].interval == 30 and s.checks[0].timeout == 10
    assert [st.targets for st in s.policy().steps] == [("notify-1", "notify-2")]
    with pytest.raises(ConfigError) as e:
        quick_start(["shop.example"], every="30s", notify=[], data_dir="d", listen="127.0.0.1:0")
    assert e.value.problems == [
        "--notify: name at least one Apprise URL to page, like json://host/hook or tgram://token/chat",
        "--check: expected an http:// or https:// URL, like https://shop.example/ (got 'shop.example')",
    ]
    with pytest.raises(ConfigError, match="--every: expected a duration"):
        quick_start(["https://x/"], every="often", notify=["json://h/"], data_dir="d", listen="127.0.0.1:0")


def test_the_example_config_is_valid() -> None:
    from shieldwall.monitor._config import load

    s = load(Path(__file__).resolve().parents[2] / "examples" / "monitor.toml")
    assert [c.name for c in s.checks] == ["shop", "checkout"] and s.quorum() == 2
    assert [st.after for st in s.policy().steps] == [0, 120, 300]


def test_an_apprise_url_apprise_refuses_is_named_without_its_secret() -> None:
    got = problems({**BASE, "alerts": {"targets": {"sms": "twilio://SID:TOKEN@+1555/+1666"}}})
    assert got == [
        "alerts.targets.sms: Apprise does not accept this twilio:// URL (bad or missing credentials or "
        "numbers? see the Apprise wiki for twilio://) (value not shown: it may hold secrets)"
    ]
    assert "TOKEN" not in got[0]
