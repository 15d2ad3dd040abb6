"""Pages get through: a notification endpoint that refuses connections for
30 s still gets the page and the recovery once it accepts; a step whose every
channel fails escalates at once; the fallback is tried; nothing owed is lost
over a restart, and each page carries its deduplication key.

The receivers are real HTTP servers on loopback and Apprise really posts to
them; a refusing receiver really refuses (its port is bound, not listening).
Where 30 s would be waited, the monitor's clock is the test's (it decides when
a retry is due), and the rounds are closed by hand at each fake second."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from monitor_helpers import (
    T0,
    TOKEN,
    Receiver,
    Shop,
    Wall,
    one_probe,
    second,
    settings_for,
    wait_until,
)
from typer.testing import CliRunner

from shieldwall.cli import app
from shieldwall.monitor._delivery import DeliveryStatus, RetryPolicy, backoff
from shieldwall.monitor._engine import CheckRule, MonitorCore
from shieldwall.monitor._escalation import Policy, Step
from shieldwall.monitor._quorum import ProbeResult
from shieldwall.monitor._service import Monitor
from shieldwall.monitor._store import Store
from shieldwall.monitor._web import build_app

AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


async def test_a_receiver_refusing_for_30s_gets_the_page_and_the_recovery_once_it_accepts(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    wall = Wall()
    chat = Receiver(clock=wall)  # refusing
    sms = Receiver(accepting=True, clock=wall)
    mail = Receiver(accepting=True, clock=wall)
    receivers += [chat, sms, mail]
    settings = one_probe(
        tmp_path,
        {"chat": chat.url(), "sms": sms.url(), "mail": mail.url()},
        escalation=[{"after": "0s", "notify": ["chat"]}, {"after": "5m", "notify": ["sms"]}],
        fallback=["mail"],
        retry_backoff="1s",
        retry_backoff_max="8s",
    )
    mon = Monitor(settings, data_dir=tmp_path, wall=wall)
    asgi = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(mon)), base_url="http://monitor")
    seen_owed: dict[str, Any] = {}
    try:
        # 2 s up, 8 s down, then up; the chat endpoint refuses until t = 30 s
        for s in range(46):
            wall.t = T0 + s
            if s == 30:
                chat.accept()
            second(mon, wall, up=not 2 <= s < 10)
            await mon.deliver_due()
            if s == 20:
                full = (await asgi.get("/api/status", headers=AUTH)).json()
                public = (await asgi.get("/api/status")).json()
                metrics = (await asgi.get("/metrics")).text
                listed = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["incidents", "list", "--data", str(tmp_path)])
                seen_owed = {"full": full, "public": public, "metrics": metrics, "list": listed.output}
        inc = mon.store.incident(1)
        notes = {n.key: n for n in mon.store.notifications(1)}
    finally:
        await asgi.aclose()
        mon.close()
    assert inc is not None and inc.declared_at == T0 + 3 and inc.ended_at == T0 + 10
    key = f"shieldwall-{mon.instance}-1-"
    # the first step's only channel refused: the next step and the fallback got the page at once, not after 5 min
    assert [(p.at - T0, p.type, p.dedup_header) for p in sms.got] == [
        (3, "failure", key + "step-1"),
        (10, "success", key + "recovery"),
    ]
    assert [(p.at - T0, p.type) for p in mail.got] == [(3, "failure"), (10, "success")]
    assert mail.got[0].dedup_header == key + "step-0"  # the fallback carries the failed step's key
    # chat: nothing while it refused; then the page, then the recovery, in that order, each once
    assert chat.got and all(p.at >= T0 + 30 for p in chat.got)
    assert [(p.type, p.dedup_header, p.dedup_field) for p in chat.got] == [
        ("failure", key + "step-0", key + "step-0"),
        ("success", key + "recovery", key + "recovery"),
    ]
    assert chat.got[-1].at <= T0 + 30 + 8  # within one capped backoff of accepting
    assert chat.got[0].title.startswith("WAS DOWN: shop (incident #1") and "Sent late" in chat.got[0].message
    assert f"Ref: {key}step-0" in chat.got[0].message
    step0 = notes["step:0"]
    chat_tries = next(d for d in step0.deliveries if d.target == "chat").attempts
    assert 5 <= chat_tries <= 9, chat_tries  # 1, 2, 4, 8, 8 ... s apart over 30 s: never given up
    assert {n.status for n in notes.values()} == {"sent"}
    # while it was owed, it was visible: status API (token), metrics, `shieldwall incidents list`
    owed = seen_owed["full"]["undelivered"]
    assert [(o["incident"], o["page"], [c["target"] for c in o["channels"]]) for o in owed] == [(1, "step:0", ["chat"])]
    assert "Connection error" in owed[0]["channels"][0]["error"]  # Apprise's own words for a refused connect
    assert "undelivered" not in seen_owed["public"]
    assert "shieldwall_monitor_pages_undelivered 1.0" in seen_owed["metrics"]
    assert "UNDELIVERED: step:0 to chat" in seen_owed["list"]


def test_a_step_whose_every_channel_fails_escalates_at_once_and_retries_for_the_incidents_life() -> None:
    """Pure core, fake time: one hour of a dead SMS gateway."""
    policy = Policy((Step(0, ("chat", "sms")), Step(300, ("voice",))), realert_every=None, fallback=("mail",))
    core = MonitorCore({"shop": CheckRule(("a",), 1, 1)}, policy, retry=RetryPolicy(2, 60, ("mail",)))
    t = 1000.0
    core.record(ProbeResult("shop", "a", t, False, "status 503"))
    assert core.close_round("shop", t).opened is not None
    tries: dict[str, list[float]] = {}
    while t < 1000 + 3600:
        core.plan(t)
        for inc, o, d in core.sends(t):
            tries.setdefault(f"{o.key}>{d.target}", []).append(t - 1000)
            ok = d.target in ("voice",) and t >= 1000 + 10  # chat, sms and mail are down; voice from 10 s
            core.outcome(inc.id, o.key, d.target, ok=ok, error="" if ok else "connection refused", now=t)
        t += 1.0
    # step 0 failed on both channels at 0 s: step 1 was due then, not at 300 s, and the fallback too
    assert tries["step:1>voice"][:2] == [1.0, 3.0]  # planned at the next tick, retried after 2 s
    assert tries["step:0>mail"][0] == 1.0
    chat = tries["step:0>chat"]
    assert chat[:5] == [0.0, 2.0, 6.0, 14.0, 30.0] and chat[-1] > 3500  # backoff doubles to 60 s, never stops
    gaps = [b - a for a, b in itertools.pairwise(chat)]
    assert max(gaps) == 60.0
    assert backoff(1, 2, 60) == 2 and backoff(10, 2, 60) == 60
    # an acknowledgement supersedes what is still owed
    inc = core.open_incident("shop")
    assert inc is not None
    core.acknowledge(inc.id, by="ops", now=t)
    states = {o.key: {d.target: d.status for d in o.deliveries.values()} for o in core.outbox(inc.id)}
    assert states["step:0"] == {k: DeliveryStatus.SUPERSEDED for k in ("chat", "sms", "mail")}
    assert states["step:1"]["voice"] is DeliveryStatus.SENT
    assert core.sends(t + 3600) == []


async def test_a_restart_resends_a_page_it_cannot_prove_was_sent_with_the_same_key(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    """The crash between the send and its record: at least once, folded by key."""
    wall = Wall()
    chat = Receiver(accepting=True, clock=wall)
    receivers.append(chat)
    settings = one_probe(tmp_path, {"chat": chat.url()})
    # what a monitor that crashed mid-send leaves: the incident, the page row "sending", nothing proven
    store = Store.in_dir(tmp_path)
    store.note_check("shop", "http://127.0.0.1:9/", T0 - 60)
    store.close()
    db = sqlite3.connect(tmp_path / "monitor.sqlite3")
    db.execute(
        "INSERT INTO incidents (id, check_name, started_at, declared_at, reason, probes, updated_at) "
        "VALUES (1, 'shop', ?, ?, 'status 503', '[\"here\"]', ?)",
        (T0 - 30, T0 - 29, T0 - 29),
    )
    db.execute(
        "INSERT INTO notifications (incident_id, key, kind, targets, title, body, status, attempts, created_at) "
        "VALUES (1, 'step:0', 'alert', '[\"chat\"]', 'DOWN: shop', 'x', 'sending', 1, ?)",
        (T0 - 29,),
    )
    db.commit()
    db.close()
    for _ in range(2):  # two restarts: the second has the proof and sends nothing
        mon = Monitor(settings, data_dir=tmp_path, wall=wall)
        try:
            await mon.deliver_due()
            wall.t += 1
            await mon.deliver_due()
        finally:
            mon.close()
    assert [p.type for p in chat.got] == ["failure"]
    assert chat.got[0].dedup_header.endswith("-1-step-0")
    check = Store.in_dir(tmp_path, readonly=True)
    try:
        assert [(n.key, n.status) for n in check.notifications(1)] == [("step:0", "sent")]
    finally:
        check.close()


async def test_the_service_loop_delivers_the_page_and_recovery_after_the_endpoint_comes_back(
    shop: Shop, tmp_path: Path, monitors: Any, receivers: list[Receiver]
) -> None:
    """End to end, real time, the monitor's own loops: a short refusal."""
    chat = Receiver()
    sms = Receiver(accepting=True)
    receivers += [chat, sms]
    alerts = {
        "targets": {"chat": chat.url(), "sms": sms.url()},
        "escalation": [{"after": "0s", "notify": ["chat"]}, {"after": "1h", "notify": ["sms"]}],
        "realert_every": "1h",
        "retry_backoff": "0.2s",
        "retry_backoff_max": "0.4s",
    }
    webhook_stub = type("W", (), {"url": lambda self, p: chat.url(p)})()
    mon = await monitors(settings_for(shop, webhook_stub, tmp_path, alerts=alerts), tmp_path)
    await wait_until(lambda: mon.mon.checks["shop"].health.value == "up", 5, "the shop seen up")
    shop.down()
    await wait_until(lambda: len(sms.got) == 1, 10, "the next step, at once")
    async with httpx.AsyncClient() as c:
        full = (await c.get(mon.mon.url + "/api/status", headers={"authorization": "Bearer test-token-123456"})).json()
        metrics = (await c.get(mon.mon.url + "/metrics")).text
    assert [o["page"] for o in full["undelivered"]] == ["step:0"]
    assert "shieldwall_monitor_pages_undelivered 1.0" in metrics
    shop.up()
    await wait_until(lambda: len(sms.got) == 2, 10, "the recovery to sms")
    assert chat.got == []
    chat.accept()
    await wait_until(lambda: len(chat.got) == 2, 10, "the page and the recovery to chat")
    await asyncio.sleep(1.0)
    assert [p.type for p in chat.got] == ["failure", "success"]
    assert [p.dedup_header.rsplit("-", 2)[-2:] for p in chat.got] == [["step", "0"], ["1", "recovery"]]
    assert {n.status for n in mon.mon.store.notifications(1)} == {"sent"}
    assert mon.mon.metrics.registry.get_sample_value("shieldwall_monitor_pages_undelivered") == 0


def test_the_dedup_key_rides_where_each_receiver_reads_it() -> None:
    from shieldwall.monitor._alerts import with_dedup

    assert with_dedup("json://h/hook", "k-1") == "json://h/hook?+X-Dedup-Key=k-1&:dedup_key=k-1"
    assert with_dedup("pagerduty://key@rkey/", "k-1") == "pagerduty://key@rkey/?dedup=k-1"
    assert with_dedup("opsgenie://apikey/?region=eu", "k-1") == "opsgenie://apikey/?region=eu&alias=k-1"
    assert with_dedup("pagerduty://key@rkey/?dedup=mine", "k-1") == "pagerduty://key@rkey/?dedup=mine"
    assert with_dedup("tgram://bot/chat", "k-1") == "tgram://bot/chat"  # the "Ref:" line in the text


def test_test_notify_sends_through_every_channel_and_says_which_failed(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    import subprocess
    import sys

    chat, sms, mail = Receiver(accepting=True), Receiver(), Receiver(accepting=True)  # sms refuses
    receivers += [chat, sms, mail]
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f"""
[monitor]
data_dir = "{tmp_path / 'data'}"

[[checks]]
name = "shop"
url = "https://shop.example/"

[alerts]
targets = {{ chat = "{chat.url()}", sms = "{sms.url()}", mail = "{mail.url()}" }}
escalation = [ {{ after = "0s", notify = ["chat"] }}, {{ after = "2m", notify = ["sms"] }} ]
fallback = ["mail"]
"""
    )
    out = subprocess.run(
        [sys.executable, "-m", "shieldwall.cli", "monitor", "--config", str(cfg), "--test-notify"],
        capture_output=True, text=True, timeout=60, env={**__import__("os").environ, "COLUMNS": "200"},
    )
    assert out.returncode == 1, out.stdout + out.stderr
    rows = {ln.split("│")[1].strip(): ln for ln in out.stdout.splitlines() if ln.count("│") >= 4}
    assert "delivered" in rows["chat"] and "delivered" in rows["mail"] and "fallback" in rows["mail"]
    assert "FAILED" in rows["sms"] and "Connection error" in rows["sms"]
    assert "1 of 3 channel(s) failed: sms" in out.stderr
    assert [p.type for p in chat.got] == ["info"] and [p.type for p in mail.got] == ["info"]
    assert chat.got[0].title == "TEST: shieldwall monitor can reach chat" and chat.got[0].dedup_header
    assert not (tmp_path / "data" / "monitor.sqlite3").exists()  # a check, not a run
