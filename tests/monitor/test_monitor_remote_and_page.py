"""Remote probes over HTTP, and the public status page in headless chromium."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from monitor_helpers import Shop, Webhook, settings_for, wait_until

import chromium
from shieldwall.monitor._incident import Incident
from shieldwall.monitor._store import Store

TOKEN = "remote-probe-token-0123456789"


def remote_settings(shop: Shop, webhook: Webhook, data: Path) -> Any:
    return settings_for(
        shop,
        webhook,
        data,
        probes={
            "local": [{"name": "p1", "source_address": "127.0.0.2"}],
            "remote": [{"name": "r1", "token": TOKEN}],
            "quorum": 2,
            "confirm_rounds": 2,
        },
    )


async def test_a_remote_probe_pulls_the_checks_and_its_reports_count_in_the_quorum(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any, procs: Any
) -> None:
    mon = await monitors(remote_settings(shop, webhook, tmp_path), tmp_path)
    probe = procs.python(
        "-m", "shieldwall.cli", "probe", "--monitor", mon.mon.url, "--token", TOKEN, "--name", "r1",
        stderr=subprocess.DEVNULL,
    )
    rounds = mon.mon.core.trackers["shop"]

    def sees(probe: str) -> bool:
        rep = mon.mon.checks["shop"].last_round
        return rep is not None and probe in [r.probe for r in rep.passing]

    await wait_until(lambda: sees("r1") and sees("p1"), 20, "both probes reporting")
    # only the remote vantage point (127.0.0.1) sees trouble: a warning, no page
    def warnings() -> float:
        v = mon.mon.metrics.registry.get_sample_value("shieldwall_monitor_probe_warnings_total", {"check": "shop"})
        return v or 0.0

    shop.fail_for = {"127.0.0.1"}
    before = warnings()
    start = rounds.round_no
    await wait_until(lambda: rounds.round_no >= start + 8, 10, "eight rounds")
    assert webhook.got == [] and mon.mon.store.incidents() == []
    assert warnings() - before >= 4  # r1's failures were seen (as warnings) in most rounds
    # both agree: page
    shop.fail_for = set()
    shop.down()
    await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the page")
    inc = mon.mon.store.incident(1)
    assert inc is not None and set(inc.probes) == {"p1", "r1"}
    assert probe.poll() is None


async def test_the_probe_api_refuses_bad_tokens_and_bad_reports(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    mon = await monitors(remote_settings(shop, webhook, tmp_path), tmp_path)
    url = mon.mon.url
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient() as c:
        assert (await c.get(url + "/api/probe/checks")).status_code == 401
        assert (await c.get(url + "/api/probe/checks", headers={"authorization": "Bearer x"})).status_code == 401
        got = (await c.get(url + "/api/probe/checks", headers=auth)).json()
        assert got["probe"] == "r1" and [ch["name"] for ch in got["checks"]] == ["shop"]
        assert "ca_file" not in got["checks"][0]
        bad = await c.post(url + "/api/probe/report", headers=auth, json={"results": [{"check": "shop"}]})
        assert bad.status_code == 400 and "ok must be true or false" in bad.json()["error"]
        # a report may not speak for another probe: the name comes from the token
        body = {"results": [{"check": "shop", "probe": "p1", "ok": False, "at": time.time()}, {"check": "zz", "ok": True, "at": 1}]}
        ok = await c.post(url + "/api/probe/report", headers=auth, json=body)
        assert ok.json() == {"accepted": 1, "refused": 1}
    out = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shieldwall.cli", "probe", "--monitor", url, "--token", "wrong-token",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(out.communicate(), 30)
    assert out.returncode == 2 and "refused the token" in err.decode()


# -- status page in chromium -----------------------------------------------------------


def chromium_page(url: str, profile: Path) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    driver = chromium.driver(profile, window="1000,1400")
    try:
        driver.set_page_load_timeout(20)
        driver.get(url)
        banner = driver.find_element(By.ID, "overall")
        section = driver.find_element(By.CSS_SELECTOR, "section.check")
        bars = section.find_elements(By.CSS_SELECTOR, ".bar")
        return {
            "title": driver.title,
            "banner": banner.text,
            "banner_bg": banner.value_of_css_property("background-color"),
            "health": section.get_attribute("data-health"),
            "state_text": section.find_element(By.CSS_SELECTOR, ".state").text,
            "bars": [(b.get_attribute("data-day"), b.get_attribute("data-state")) for b in bars],
            "bar_widths": [b.size["width"] for b in bars],
            "down_color": next(
                b.value_of_css_property("background-color") for b in bars if b.get_attribute("data-state") == "down"
            ),
            "recent": [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#recent li")],
            "resources": driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            ),
        }
    finally:
        chromium.quit_driver(driver)


@pytest.mark.browser
async def test_the_status_page_shows_the_current_state_and_90_days_of_bars_in_chromium(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    if not chromium.available():
        pytest.skip(chromium.MISSING)
    now = time.time()
    day = 86400.0
    store = Store.in_dir(tmp_path)
    store.note_check("shop", shop.url, now - 30 * day)
    store.observe("shop", (now - 30 * day, now), new=True)  # watched for the last 30 days
    midnight = now - now % day
    two_hours = midnight - 3 * day + 3600  # 01:00-03:00 UTC three days ago: a "down" day
    store.save_incident(Incident(1, "shop", two_hours, two_hours, "x", ended_at=two_hours + 7200))
    ten_min = midnight - 10 * day + 3600  # a "partial" day
    store.save_incident(Incident(2, "shop", ten_min, ten_min, "y", ended_at=ten_min + 600))
    store.close()
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    shop.down()
    await wait_until(lambda: mon.mon.checks["shop"].health.value == "down", 10, "the shop to be down")
    page = await asyncio.to_thread(chromium_page, mon.mon.url + "/", tmp_path / "chromium")
    assert page["title"] == "Shop status"
    assert page["banner"] == "Some services are down" and page["health"] == "down"
    assert page["banner_bg"] in ("rgb(209, 52, 56)", "rgba(209, 52, 56, 1)")  # the inline CSS applied
    assert page["state_text"] == "Down"
    bars = page["bars"]
    assert len(bars) == 90 and all(w > 0 for w in page["bar_widths"])
    import datetime as dt

    def day_of(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()

    states = dict(bars)
    assert bars[-1][0] == day_of(now)
    assert states[day_of(two_hours)] == "down"
    assert states[day_of(ten_min)] == "partial"
    assert states[day_of(now - 20 * day)] == "up"
    assert states[day_of(now - 60 * day)] == "nodata"
    assert states[day_of(now)] == "partial"  # today's outage, still open
    assert page["down_color"] in ("rgb(229, 72, 77)", "rgba(229, 72, 77, 1)")
    recent = page["recent"]
    assert len(recent) == 3 and recent[0].startswith("shop: ") and "ongoing for" in recent[0]
    assert recent[1].endswith("down for 2h 00m") and recent[2].endswith("down for 10m 00s")
    assert [r for r in page["resources"] if not r.startswith(mon.mon.url)] == []  # no external assets
