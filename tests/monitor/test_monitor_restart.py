"""The monitor as a real process: killed mid-incident and started again, it
resumes the incident, sends the next step once, and re-sends only what it
cannot prove was sent (with the same deduplication key)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
from monitor_helpers import Shop, Webhook, folded


def write_config(path: Path, shop: Shop, webhook: Webhook, data: Path) -> None:
    path.write_text(
        f"""
[monitor]
listen = "127.0.0.1:0"
data_dir = "{data}"
api_token = "restart-token-0123456789"
revenue_per_minute = 100.0
round_grace = "40ms"

[probes]
quorum = 2
confirm_rounds = 2
local = [
  {{ name = "p1", source_address = "127.0.0.1" }},
  {{ name = "p2", source_address = "127.0.0.2" }},
  {{ name = "p3", source_address = "127.0.0.3" }},
]

[[checks]]
name = "shop"
url = "{shop.url}"
interval = "300ms"
timeout = "250ms"

[alerts]
realert_every = "1h"
targets = {{ chat = "{webhook.url('chat')}", sms = "{webhook.url('sms')}" }}
escalation = [ {{ after = "0s", notify = ["chat"] }}, {{ after = "3s", notify = ["sms"] }} ]
"""
    )


def wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def status(data: Path) -> dict[str, object] | None:
    try:
        url = json.loads((data / "monitor.json").read_text())["url"]
        return httpx.get(url + "/api/status", timeout=1).json()  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None


def health(data: Path) -> str | None:
    s = status(data)
    return s["checks"][0]["health"] if s else None  # type: ignore[index]


def test_a_restart_mid_incident_loses_nothing_and_sends_nothing_twice(
    shop: Shop, webhook: Webhook, tmp_path: Path, procs
) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    cfg = tmp_path / "monitor.toml"
    write_config(cfg, shop, webhook, data)
    cmd = ["-m", "shieldwall.cli", "monitor", "--config", str(cfg)]
    with open(tmp_path / "first.log", "wb") as log1:
        first = procs.python(*cmd, stderr=log1)
    wait(lambda: health(data) == "up", 20, "the first monitor to see the shop up")
    shop.down()
    wait(lambda: len(webhook.to("chat")) == 1, 10, "the chat page")
    os.killpg(first.pid, signal.SIGKILL)  # a crash, not a polite stop
    first.wait(5)
    (data / "monitor.json").unlink()  # a crash leaves the old address behind
    with open(tmp_path / "second.log", "wb") as log2:
        second = procs.python(*cmd, stderr=log2)
    wait(lambda: len(webhook.to("sms")) == 1, 15, "the SMS step from the restarted monitor")
    assert "resuming incident #1" in (tmp_path / "second.log").read_text()
    shop.up()
    wait(lambda: len(webhook.to("sms")) == 2, 10, "the recovery")
    time.sleep(1.5)
    # a crash right after a send may repeat that page (at least once): folded by its key, each came once
    assert folded(webhook.to("chat")) == ["failure", "success"]
    assert [d.type for d in webhook.to("sms")] == ["failure", "success"]
    assert all(d.dedup for d in webhook.got)
    assert "incident #1" in webhook.to("sms")[0].title
    second.send_signal(signal.SIGTERM)
    assert second.wait(10) == 0
    assert not (data / "monitor.json").exists()

    import sqlite3

    db = sqlite3.connect(data / "monitor.sqlite3")
    incidents = db.execute("SELECT id, ended_at IS NOT NULL FROM incidents").fetchall()
    assert incidents == [(1, 1)]
    notes = db.execute("SELECT key, status FROM notifications ORDER BY id").fetchall()
    assert notes == [("step:0", "sent"), ("step:1", "sent"), ("recovery", "sent")]
    db.close()


def test_a_bad_config_exits_2_listing_every_problem(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        """
[monitor]
listne = "x"

[probes]
quorum = 5
confirm_rounds = 0

[[checks]]
name = "shop"
url = "ftp://shop"
interval = "soon"

[alerts]
targets = { chat = "json://127.0.0.1/hook" }
escalation = [ { after = "0s", notify = ["pager"] } ]
"""
    )
    out = subprocess.run(
        [sys.executable, "-m", "shieldwall.cli", "monitor", "--config", str(cfg)], capture_output=True, text=True
    )
    assert out.returncode == 2
    err = out.stderr
    assert "monitor.listne: unknown key (got 'x'); accepted keys here: listen, data_dir" in err
    assert "probes.confirm_rounds: Input should be greater than or equal to 1 (got 0)" in err
    assert "checks[0].url: expected an http:// or https:// URL, like https://shop.example/ (got 'ftp://shop')" in err
    assert "checks[0].interval: expected a duration like \"250ms\", \"30s\"" in err and "(got 'soon')" in err
    assert "4 problem(s)" in err


def test_the_quick_start_watches_a_url_and_pages_without_a_config_file(
    shop: Shop, webhook: Webhook, tmp_path: Path, procs
) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "qs"
    with open(tmp_path / "qs.log", "wb") as log:
        proc = procs.python(
            "-m", "shieldwall.cli", "monitor", "--check", shop.url, "--every", "0.3s",
            "--notify", webhook.url("phone"), "--data", str(data), "--listen", "127.0.0.1:0",
            stderr=log,
        )
    wait(lambda: health(data) == "up", 20, "the quick-start monitor to see the shop up")
    shop.down()
    wait(lambda: len(webhook.to("phone")) == 1, 10, "the page")
    assert webhook.to("phone")[0].title.startswith("DOWN: 127.0.0.1")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert (data / "monitor.sqlite3").exists()


def test_the_monitor_command_needs_a_url_or_a_config(tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "shieldwall.cli", "monitor", "--data", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "--check: give a URL to watch, or --config monitor.toml (got neither)" in out.stderr
