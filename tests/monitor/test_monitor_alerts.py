"""The monitor running for real: three probes on three loopback addresses, a
shop that goes down and comes back, Apprise delivering to a local webhook.
Intervals are 0.25 s; bounds on timing are generous (the machine is shared)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from monitor_helpers import INTERVAL, Shop, Webhook, _Server, settings_for, wait_until

from shieldwall.monitor._store import Store

CONFIRM = 2
AUTH = {"authorization": "Bearer test-token-123456"}


async def test_an_outage_pages_after_the_quorum_escalates_and_recovers_once(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    await wait_until(lambda: mon.mon.checks["shop"].health.value == "up", 5, "the shop to be seen up")
    shop.down()
    failed_at = time.time()
    chat_at = await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the first page")
    detect = chat_at - failed_at
    print(f"\nfirst failed check -> first alert: {detect:.3f}s (interval {INTERVAL}s, {CONFIRM} rounds)")
    # bound: one interval until the next check, the confirmation rounds, under a second
    assert detect <= INTERVAL + CONFIRM * INTERVAL + 1.0 + 2.0  # +2 s slack for a shared, loaded machine
    assert webhook.to("sms") == []
    first = webhook.to("chat")[0]
    assert first.type == "failure" and first.title.startswith("DOWN: shop (incident #1")
    assert "cannot connect" in first.message and "shieldwall incidents ack 1" in first.message

    sms_at = await wait_until(lambda: len(webhook.to("sms")) >= 1, 10, "the SMS step")
    assert 1.0 - 0.05 <= sms_at - chat_at <= 1.0 + 3.0

    shop.up()
    await wait_until(lambda: any(d.type == "success" for d in webhook.to("chat")), 10, "the recovery")
    await asyncio.sleep(6 * INTERVAL)  # anything more would show up by now
    chat, sms = webhook.to("chat"), webhook.to("sms")
    assert [d.type for d in chat] == ["failure", "success"]
    assert [d.type for d in sms] == ["failure", "success"]
    assert chat[1].title.startswith("RECOVERED: shop is back up after")

    store: Store = mon.mon.store
    inc = store.incident(1)
    assert inc is not None and not inc.open and store.incident(2) is None
    assert failed_at - 0.05 <= inc.started_at <= failed_at + INTERVAL + 1.0
    assert inc.declared_at - inc.started_at >= (CONFIRM - 1) * INTERVAL - 0.05
    assert inc.ended_at is not None and inc.ended_at > inc.started_at
    assert sorted(n.key for n in store.notifications(1)) == ["recovery", "step:0", "step:1"]
    assert {n.status for n in store.notifications(1)} == {"sent"}


async def test_a_single_failing_probe_warns_and_never_pages(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    shop.fail_for = {"127.0.0.3"}  # only p3's vantage point sees trouble
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    await wait_until(lambda: mon.mon.core.trackers["shop"].round_no >= 12, 15, "twelve rounds")
    assert webhook.got == []
    assert mon.mon.store.incidents() == []
    async with httpx.AsyncClient() as c:
        status = (await c.get(mon.mon.url + "/api/status", headers=AUTH)).json()
        metrics = (await c.get(mon.mon.url + "/metrics")).text
    check = status["checks"][0]
    assert check["health"] == "degraded" and check["probe_health"] == "warning"
    assert "p3" in [f["probe"] for f in check["failing"]] and "p3" not in check["passing"]
    warned = [ln for ln in metrics.splitlines() if ln.startswith('shieldwall_monitor_probe_warnings_total{check="shop"}')]
    assert warned and float(warned[0].split()[-1]) >= 10
    assert 'shieldwall_monitor_probe_up{check="shop",probe="p3"} 0.0' in metrics
    assert 'shieldwall_monitor_check_up{check="shop"} 1.0' in metrics


async def test_the_public_status_says_down_and_the_incident_title_and_keeps_the_details_behind_the_token(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    shop.down()
    await wait_until(lambda: mon.mon.core.open_incident("shop") is not None, 10, "the incident")
    async with httpx.AsyncClient() as c:
        public = await c.get(mon.mon.url + "/api/status")
        full = (await c.get(mon.mon.url + "/api/status", headers=AUTH)).json()
    assert public.status_code == 200
    check = public.json()["checks"][0]
    assert check["health"] == "down"
    assert check["incident"] == {"id": 1, "title": "shop is down"}
    assert set(check) == {"name", "health", "since", "incident"}
    for secret in ("p1", "p2", "p3", "127.0.0", "cannot connect", "refused", str(shop.port)):
        assert secret not in public.text, secret
    inner = full["checks"][0]
    assert inner["probe_health"] == "down"
    assert {f["probe"] for f in inner["failing"]} == {"p1", "p2", "p3"}
    assert all("cannot connect" in f["reason"] for f in inner["failing"])


async def test_a_hanging_shop_is_an_outage_with_the_timeout_as_reason(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    shop.mode = "hang"
    await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the page for a hanging shop")
    inc = mon.mon.store.incident(1)
    assert inc is not None and "timeout after 0.25s" in inc.reason
    assert "timeout after 0.25s" in webhook.to("chat")[0].message


async def test_a_wrong_page_is_an_outage(shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any) -> None:
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    shop.mode = "wrong"
    await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the page for a wrong body")
    inc = mon.mon.store.incident(1)
    assert inc is not None and "body lacks 'Add to cart'" in inc.reason


async def test_acknowledging_over_the_api_stops_the_escalation(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    alerts = {
        "targets": {"chat": webhook.url("chat"), "sms": webhook.url("sms")},
        "escalation": [{"after": "0s", "notify": ["chat"]}, {"after": "4s", "notify": ["sms"]}],
    }
    mon = await monitors(settings_for(shop, webhook, tmp_path, alerts=alerts), tmp_path)
    shop.down()
    chat_at = await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the first page")
    async with httpx.AsyncClient() as c:
        url = f"{mon.mon.url}/api/incidents/1/ack"
        assert (await c.post(url, json={"by": "alice"})).status_code == 401
        bad = await c.post(url, headers={"authorization": "Bearer wrong"}, json={"by": "alice"})
        assert bad.status_code == 401
        ok = await c.post(url, headers={"authorization": "Bearer test-token-123456"}, json={"by": "alice"})
        assert ok.status_code == 200 and ok.json()["incident"]["acked_by"] == "alice"
        missing = await c.post(
            f"{mon.mon.url}/api/incidents/99/ack", headers={"authorization": "Bearer test-token-123456"}
        )
        assert missing.status_code == 404
    assert time.time() < chat_at + 4, "acknowledging took longer than the SMS delay; cannot judge"
    await asyncio.sleep(max(0.0, chat_at + 4.5 - time.time()))  # past the SMS step's delay
    assert webhook.to("sms") == []
    shop.up()
    await wait_until(lambda: len(webhook.to("chat")) >= 2, 10, "the recovery")
    assert [d.type for d in webhook.to("chat")] == ["failure", "success"]
    inc = mon.mon.store.incident(1)
    assert inc is not None and inc.acked_by == "alice"


async def test_a_maintenance_window_records_the_incident_but_pages_nobody(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    now = dt.datetime.now(dt.UTC)
    window = [{"start": now - dt.timedelta(minutes=5), "end": now + dt.timedelta(minutes=5), "reason": "upgrade"}]
    mon = await monitors(settings_for(shop, webhook, tmp_path, maintenance=window), tmp_path)
    shop.down()
    await wait_until(lambda: mon.mon.store.incident(1) is not None, 10, "the incident")
    await asyncio.sleep(1.5)
    shop.up()
    await wait_until(lambda: not mon.mon.store.incident(1).open, 10, "the incident to close")  # type: ignore[union-attr]
    await asyncio.sleep(4 * INTERVAL)
    assert webhook.got == []
    inc = mon.mon.store.incident(1)
    assert inc is not None and inc.quiet and inc.ended_at is not None
    async with httpx.AsyncClient() as c:
        page = (await c.get(mon.mon.url + "/")).text
        late = await c.post(
            f"{mon.mon.url}/api/incidents/1/ack", headers={"authorization": "Bearer test-token-123456"}
        )
    assert "Scheduled maintenance until" in page and "upgrade" in page
    assert late.status_code == 409 and "already closed" in late.json()["error"]


def test_a_second_monitor_on_the_same_data_refuses_to_start(shop: Shop, webhook: Webhook, tmp_path: Path) -> None:
    from shieldwall.monitor._service import DataDirBusy, Monitor

    s = settings_for(shop, webhook, tmp_path)
    first = Monitor(s, data_dir=tmp_path)
    try:
        with pytest.raises(DataDirBusy, match="another monitor is already running"):
            Monitor(s, data_dir=tmp_path)
    finally:
        first.store.close()
        first._lock.close()


async def test_a_failed_delivery_is_retried_and_recorded(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    webhook.fail = True
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    shop.down()
    store = mon.mon.store
    await wait_until(lambda: any(n.key == "step:0" and n.undelivered for n in store.notifications(1)), 10, "a failed send")
    webhook.fail = False
    await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the retried page")
    await wait_until(lambda: store.notifications(1)[0].status == "sent", 5, "the record")
    step0 = store.notifications(1)[0]
    assert step0.key == "step:0" and step0.attempts >= 2
    assert len(webhook.to("chat")) == 1


class _Shield:
    """Stands in for the shield's admin API: GET /api/verdict."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.seen_auth: list[str] = []
        shield = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                shield.seen_auth.append(self.headers.get("authorization", ""))
                body = json.dumps(answer).encode() if self.path == "/api/verdict" else b"{}"
                self.send_response(200 if self.path == "/api/verdict" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_the_incident_carries_the_shields_verdict(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    shield = _Shield({"verdict": "ddos", "kind": "flood", "confidence": 0.9})
    try:
        s = settings_for(shop, webhook, tmp_path)
        monitor = s.monitor.model_copy(update={"shield_admin": shield.url, "shield_token": "shield-secret"})
        s = s.model_copy(update={"monitor": monitor})
        mon = await monitors(s, tmp_path)
        shop.mode = "error"
        await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the page")
    finally:
        shield.close()
    inc = mon.mon.store.incident(1)
    assert inc is not None and (inc.verdict, inc.verdict_kind) == ("ddos", "flood")
    assert "Shield verdict: ddos (flood)" in webhook.to("chat")[0].message
    assert shield.seen_auth[0] == "Bearer shield-secret"


async def test_an_absent_shield_changes_nothing(shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any) -> None:
    s = settings_for(shop, webhook, tmp_path)
    s = s.model_copy(update={"monitor": s.monitor.model_copy(update={"shield_admin": "http://127.0.0.1:9"})})
    mon = await monitors(s, tmp_path)
    shop.down()
    await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the page")
    inc = mon.mon.store.incident(1)
    assert inc is not None and inc.verdict is None
    assert "Shield verdict" not in webhook.to("chat")[0].message


async def test_a_slow_notification_provider_does_not_delay_the_probes(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    webhook.delay = 2.0  # Apprise blocks in its thread for two seconds per page
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    shop.down()
    await wait_until(lambda: len(webhook.to("chat")) >= 1, 10, "the first page to reach the provider")
    tracker = mon.mon.core.trackers["shop"]
    before, t0 = tracker.round_no, time.monotonic()
    await asyncio.sleep(1.5)  # the provider is still holding the request
    rounds = tracker.round_no - before
    elapsed = time.monotonic() - t0
    assert rounds >= int(elapsed / INTERVAL) - 2, (rounds, elapsed)


async def test_unacknowledged_incidents_are_re_alerted_until_acked(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    alerts = {"targets": {"chat": webhook.url("chat")}, "realert_every": "1s"}
    mon = await monitors(settings_for(shop, webhook, tmp_path, alerts=alerts), tmp_path)
    shop.down()
    await wait_until(lambda: len(webhook.to("chat")) >= 3, 10, "two re-alerts")
    titles = [d.title for d in webhook.to("chat")]
    assert titles[0].startswith("DOWN: shop") and all(t.startswith("STILL DOWN: shop") for t in titles[1:])
    gaps = [b.at - a.at for a, b in zip(webhook.to("chat"), webhook.to("chat")[1:], strict=False)]
    assert all(0.7 <= g <= 2.0 for g in gaps), gaps
    mon.mon.acknowledge(1, "carol")
    count = len(webhook.to("chat"))
    await asyncio.sleep(2.5)
    assert len(webhook.to("chat")) == count
    keys = [n.key for n in mon.mon.store.notifications(1)]
    assert keys[:3] == ["step:0", "realert:1", "realert:2"]


async def test_an_open_incident_of_a_check_removed_from_the_config_is_closed_not_paged(
    shop: Shop, webhook: Webhook, tmp_path: Path, monitors: Any
) -> None:
    from shieldwall.monitor._incident import Incident

    store = Store.in_dir(tmp_path)
    store.save_incident(Incident(1, "old-check", time.time() - 60, time.time() - 50, "status 503"))
    store.close()
    mon = await monitors(settings_for(shop, webhook, tmp_path), tmp_path)
    await asyncio.sleep(4 * INTERVAL)
    inc = mon.mon.store.incident(1)
    assert inc is not None and not inc.open
    assert webhook.got == []
