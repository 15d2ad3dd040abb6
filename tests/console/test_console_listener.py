"""The console on a running `shieldwall serve --workers 2`: who gets in, which
requests are refused, each worker's view and the total; the Grafana
dashboard and the systemd unit shipped in examples/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_helpers import BANNER, quiet_config

from lab_procs import Procs
from tiny_shop import running_shop

ROOT = Path(__file__).resolve().parents[2]


TOKEN = "console-test-token"
UNLIMITED_PAGES = '[guard.limits.default_route]\nname = "page"\nrate = 10000.0\nburst = 10000.0\n'
"""The live-view test sends 120 pages from one address as fast as it can: under
the default page limit (burst 40, 10/s) whether that meets a 429 depended on
how fast this machine was that minute. These tests are about the console, not
the limits (tests/guard has those)."""


class Shield:
    def __init__(self, url: str, admin: str) -> None:
        self.url = url
        self.admin = admin


@pytest.fixture(scope="module")
def shield(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shield]:
    tmp = tmp_path_factory.mktemp("shield")
    procs = Procs()
    try:
        with running_shop() as shop:
            env = {**os.environ, "SHIELDWALL_ADMIN_TOKEN": TOKEN}
            proc = procs.python("-m", "shieldwall.cli", "serve", "--listen", "127.0.0.1:0",
                                "--admin", "127.0.0.1:0", "--backend", shop, "--workers", "2",
                                "--config", str(quiet_config(tmp, UNLIMITED_PAGES)),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            assert proc.stdout is not None
            m = BANNER.search(proc.stdout.readline().decode())
            assert m
            yield Shield(f"http://127.0.0.1:{m.group(1)}", f"http://127.0.0.1:{m.group(2)}")
    finally:
        procs.stop_all()


def login(admin: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=admin, timeout=5)
    r = c.post("/console/login", data={"token": TOKEN, "operator": "ann"})
    assert r.status_code == 303 and r.headers["location"] == "/console"
    return c, c.get("/console/api/session").json()["csrf"]


def every_auth_route() -> list[tuple[str, str]]:
    """Every route the admin listener serves behind the token: the parts'
    (as wired for serve) and the console's own (its page, API and files)."""
    from shieldwall.config import build_config
    from shieldwall.console import Console, ConsoleAuth
    from shieldwall.proxy.wiring import wire

    config = build_config({"backends": [{"url": "http://127.0.0.1:9"}]})
    routes = [(r.method, r.path) for r in wire(config).routes if r.auth]

    async def nothing(*a: Any) -> Any:
        raise AssertionError("not called")

    console = Console(ConsoleAuth(TOKEN), nothing, nothing, lambda: b"")
    routes += [(r.method, r.path) for r in console.routes if r.auth]
    return routes


def test_without_the_token_every_route_answers_401(shield: Shield) -> None:
    routes = every_auth_route()
    paths = {p for _, p in routes}
    assert {"/api/status", "/api/mode", "/api/ban", "/console", "/console/api/live",
            "/console/api/timeline", "/console/static/console.js",
            "/console/static/vendor/uplot/uPlot.iife.min.js"} <= paths
    with httpx.Client(base_url=shield.admin, timeout=5) as c:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Cookie": "shieldwall_console=forged"}):
                r = c.request(method, path, headers=headers, content=b"{}")
                assert r.status_code == 401, (method, path, headers, r.status_code)
        page = c.get("/console")
        assert page.status_code == 401 and 'action="/console/login"' in page.text, \
            "a browser without a session gets the login form"
        assert c.get("/console/static/nothing-here.js").status_code == 401
        wrong = c.post("/console/login", data={"token": "guess", "operator": "eve"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        # open on purpose: the load balancer's probe and Prometheus
        assert c.get("/healthz").status_code == 200
        assert c.get("/metrics").status_code == 200


def test_a_change_from_another_origin_is_refused_and_changes_nothing(shield: Shield) -> None:
    c, csrf = login(shield.admin)
    try:
        before = c.get("/api/status").json()
        evil = "http://127.0.0.1:1"  # another port on the same host: the same *site*
        body = {"mode": "under_attack"}
        for headers in ({"Origin": evil, "Sec-Fetch-Site": "same-site", "X-CSRF-Token": csrf},
                        {"Origin": evil, "X-CSRF-Token": csrf},
                        {"Origin": shield.admin},  # no CSRF token
                        {"Origin": shield.admin, "X-CSRF-Token": "forged"}):
            r = c.post("/api/mode", json=body, headers=headers)
            assert r.status_code == 403, (headers, r.text)
        r = httpx.post(shield.admin + "/api/mode", json=body,
                       headers={"Authorization": f"Bearer {TOKEN}", "Origin": evil})
        assert r.status_code == 403, "the token in a cross-site request is refused too"
        assert c.get("/api/status").json()["mode"] == before["mode"]
        ok = c.post("/api/ban", json={"value": "198.51.100.77", "ttl": 60},
                    headers={"Origin": shield.admin, "X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text
        assert ok.json()["workers"]["applied"] == 2, "a console ban reaches every worker"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            live = c.get("/console/api/live").json()
            actions = [e for e in live["timeline"] if e["kind"] == "action"]
            bans = [e for e in live["timeline"] if e["kind"] == "ban"]
            if actions and bans:
                break
            time.sleep(0.3)
        assert actions[0]["text"] == "ban 198.51.100.77 for 60s"
        assert actions[0]["who"] == "ann (console) from 127.0.0.1"
        assert [b["origin"] for b in live["bans"] if b["value"] == "198.51.100.77/32"] == ["operator"]
        csv_export = c.get("/console/api/timeline", params={"format": "csv", "hours": "1"})
        assert "attachment" in csv_export.headers["content-disposition"]
        assert "ban 198.51.100.77 for 60s" in csv_export.text
        assert c.post("/api/unban", json={"value": "198.51.100.77"},
                      headers={"Origin": shield.admin, "X-CSRF-Token": csrf}).status_code == 200
    finally:
        c.close()


def test_the_live_view_shows_each_workers_share_and_the_total(shield: Shield) -> None:
    sent = 120
    for i in range(sent):  # a new connection each: the kernel spreads them over the workers
        assert httpx.get(f"{shield.url}/product/{i % 7}", headers={"User-Agent": "counted"}
                         ).status_code == 200
    c, _ = login(shield.admin)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            live = c.get("/console/api/live").json()
            agents = dict((k, n) for k, n, _ in live["top"]["agent"])
            # the charts end with the last whole second: wait for it
            if agents.get("counted", 0) >= sent and \
                    sum(live["series"]["outcomes"]["allowed"]) >= sent:
                break
            time.sleep(0.5)
    finally:
        c.close()
    assert agents.get("counted") == sent, live["top"]["agent"]
    workers = live["workers"]
    assert [w["worker"] for w in workers] == [0, 1]
    assert len({w["pid"] for w in workers}) == 2
    assert sum(live["series"]["outcomes"]["allowed"]) >= sent
    assert live["backends"]["backends"][0]["healthy"] is True
    assert live["mode"]["mode"] == "normal" and live["verdict"]["verdict"] == "normal"


def _exported_names(text: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        if fam.type == "histogram":
            names.update(fam.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_every_grafana_query_uses_a_metric_the_shield_exports(shield: Shield) -> None:
    httpx.get(shield.url + "/")
    exported = _exported_names(httpx.get(shield.admin + "/metrics").text)
    dash = json.loads((ROOT / "examples" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) >= 20
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\bshieldwall_[a-z_]+\b", expr))
        assert names, f"a query with no shieldwall metric: {expr}"
        used |= names
    missing = sorted(used - exported)
    assert not missing, f"the dashboard queries metrics the shield does not export: {missing}"


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="systemd-analyze is not installed (Debian package: systemd)")
def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (ROOT / "examples" / "shieldwall.service").read_text()
    assert "/opt/shieldwall/bin/shieldwall" in unit
    # verify checks that ExecStart exists: point it at this checkout's entry point
    exe = Path(sys.executable).with_name("shieldwall")
    assert exe.exists(), exe
    path = tmp_path / "shieldwall.service"
    path.write_text(unit.replace("/opt/shieldwall/bin/shieldwall", str(exe)))
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in unit.splitlines()
             if "=" in line and not line.startswith("#")}
    assert lines["DynamicUser"] == "yes" and "User" not in lines, "never root"
    assert lines["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert lines["NoNewPrivileges"] == "yes"
    sec = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", str(path)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", sec.stdout)
    assert m, sec.stdout[-500:] + sec.stderr
    assert float(m.group(1)) <= 2.0, f"exposure {m.group(1)} (systemd: <= 2.0 is 'OK')"
