"""The console's pure parts: what it counts per worker, how it adds workers
up, who may log in, which requests count as cross-site, the timeline."""

from __future__ import annotations

import csv
import io

from shieldwall.admin_api import AdminRequest, AdminResponse
from shieldwall.console import (
    ConsoleAuth,
    Recorder,
    Timeline,
    cross_site,
    metric_totals,
    outcome_of,
)
from shieldwall.console._console import merge_series, merge_top
from shieldwall.console._recorder import MAX_KEYS_PER_SECOND, OTHER, network_of, percentile
from shieldwall.detect.events import Outcome, RequestEvent


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ev(client: str = "192.0.2.7", *, at: float = 1_000_000.2, decision: str = "allow",
       outcome: Outcome = Outcome.OK, status: int = 200, path: str = "/", agent: str = "ua",
       rt: float = 0.004, cls: str = "unknown", upstream: str = "b:1") -> RequestEvent:
    return RequestEvent(time=at, client=client, method="GET", path=path, query="", status=status,
                        bytes_sent=10, request_time=rt, user_agent=agent, outcome=outcome,
                        decision=decision, cls=cls, upstream=upstream)


def test_each_request_gets_one_outcome_as_the_operator_names_it() -> None:
    assert outcome_of(ev()) == "allowed"
    assert outcome_of(ev(decision="limit", outcome=Outcome.SHIELD, status=429)) == "limited"
    assert outcome_of(ev(decision="challenge", outcome=Outcome.SHIELD, status=403)) == "challenged"
    assert outcome_of(ev(decision="block", outcome=Outcome.SHIELD, status=403)) == "blocked"
    assert outcome_of(ev(decision="respond", outcome=Outcome.SHIELD, status=302,
                         path="/.shieldwall/verify")) == "solved"
    assert outcome_of(ev(decision="respond", outcome=Outcome.SHIELD, status=403,
                         path="/.shieldwall/verify")) == "shield"
    assert outcome_of(ev(outcome=Outcome.SHIELD, status=503)) == "shed"
    assert outcome_of(ev(outcome=Outcome.STALE)) == "stale"
    assert outcome_of(ev(outcome=Outcome.REFUSED, status=502)) == "error"


def test_the_recorder_counts_each_second_and_the_top_talkers_of_the_last_minute() -> None:
    clock = Clock()
    rec = Recorder(clock)
    for _ in range(30):
        rec.sink(ev("198.51.100.9", decision="block", outcome=Outcome.SHIELD, status=403))
    for i in range(5):
        rec.sink(ev(f"192.0.2.{i}", path="/cart", cls="customer"))
    clock.t += 1
    rec.tick()
    view = rec.view()
    [(at, outcomes, classes, latency)] = view["seconds"]
    assert at == 1_000_000 and outcomes == {"blocked": 30, "allowed": 5}
    assert classes == {"unknown": 30, "customer": 5}
    assert sum(latency.values()) == 5, "latency is of served requests, not of refusals"
    assert view["top"]["address"][0] == ["198.51.100.9", 30, 30]
    assert view["top"]["network"][0] == ["198.51.100.0/24", 30, 30]
    assert view["top"]["network"][1] == ["192.0.2.0/24", 5, 0]
    assert view["backends"] == {"b:1": [35, 0]}

    clock.t += 61
    rec.tick()
    assert rec.view()["top"]["address"] == [], "the top talkers cover the last 60 s only"
    assert len(rec.view()["seconds"]) == 1, "the per-second history stays for the charts"


def test_a_randomized_flood_cannot_grow_the_counters_without_bound() -> None:
    clock = Clock()
    rec = Recorder(clock)
    for i in range(MAX_KEYS_PER_SECOND + 500):
        rec.sink(ev(path=f"/r/{i}"))
    rec.tick()
    paths = rec.top["path"].total
    assert len(paths) == MAX_KEYS_PER_SECOND + 1
    assert paths[OTHER][0] == 500


def test_a_second_drained_in_pieces_counts_as_one_second_with_the_same_bound() -> None:
    clock = Clock()
    rec = Recorder(clock)
    for piece in range(3):  # three drains within one second, as the live loop does
        for i in range(MAX_KEYS_PER_SECOND // 2):
            rec.sink(ev(path=f"/r/{piece}/{i}"))
        rec.sink(ev("198.51.100.9"))
        rec.drain()
    paths = rec.top["path"].total
    assert len(paths) == MAX_KEYS_PER_SECOND + 1, "the cap holds per second, not per drain"
    # 7,500 distinct paths and "/": the first 4,999 and "/" fill the cap, the rest is OTHER
    assert paths[OTHER][0] == 3 * (MAX_KEYS_PER_SECOND // 2) - (MAX_KEYS_PER_SECOND - 1)
    assert len(rec.top["path"].seconds) == 1
    assert rec.top["address"].total["198.51.100.9"] == [3, 0]
    [(_at, outcomes, _c, _l)] = rec.view()["seconds"]
    assert outcomes == {"allowed": 3 * (MAX_KEYS_PER_SECOND // 2 + 1)}
    clock.t += 61
    rec.tick()
    assert rec.top["path"].total == {} and rec.top["address"].total == {}


def test_percentiles_come_from_log_buckets_and_say_none_without_requests() -> None:
    assert percentile({}, 0.99) is None
    p = percentile({0: 99, 20: 1}, 0.5)
    assert p is not None and p <= 0.0005
    p99 = percentile({0: 98, 20: 2}, 0.99)
    assert p99 is not None and p99 > 1.0
    assert network_of("2001:db8::1") == "2001:db8::/48"


def test_workers_are_added_up_second_by_second() -> None:
    a = {"seconds": [[100, {"allowed": 3}, {"unknown": 3}, {"2": 3}],
                     [101, {"blocked": 7}, {"suspect": 7}, {}]],
         "top": {"address": [["10.0.0.1", 7, 7]], "network": [], "agent": [], "path": []}}
    b = {"seconds": [[101, {"blocked": 5, "allowed": 1}, {"suspect": 5, "unknown": 1}, {"3": 1}]],
         "top": {"address": [["10.0.0.1", 5, 5], ["10.0.0.2", 1, 0]], "network": [], "agent": [],
                 "path": []}}
    s = merge_series([a, b], 99, 101)
    assert s["t"] == [99, 100, 101]
    assert s["total"] == [0, 3, 13]
    assert s["outcomes"]["blocked"] == [0, 0, 12]
    assert s["classes"]["suspect"] == [0, 0, 12]
    assert s["p50"][0] is None and s["p50"][1] is not None
    assert merge_top([a, b])["address"] == [["10.0.0.1", 12, 12], ["10.0.0.2", 1, 0]]


def test_only_the_admin_token_logs_in_and_wrong_guesses_are_rate_limited() -> None:
    clock = Clock()
    auth = ConsoleAuth("s3cret", clock)
    assert auth.login("nope", "eve") is None
    s = auth.login("s3cret", "ann <b>")
    assert s is not None and s.operator == "ann <b>"
    cookie = ConsoleAuth.set_cookie(s)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert auth.session({"cookie": f"other=1; shieldwall_console={s.sid}"}) == s
    assert auth.session({"cookie": "shieldwall_console=forged"}) is None
    assert ConsoleAuth.csrf_ok(s, {"x-csrf-token": s.csrf})
    assert not ConsoleAuth.csrf_ok(s, {})
    clock.t += 13 * 3600
    assert auth.session({"cookie": f"shieldwall_console={s.sid}"}) is None, "sessions expire"
    for _ in range(9):
        auth.login("guess", "")
    assert not auth.login_blocked()
    auth.login("guess", "")
    assert auth.login_blocked(), "the tenth wrong token in a minute closes the door"
    clock.t += 61
    assert not auth.login_blocked()
    assert ConsoleAuth("", clock).login("", "") is None, "no token configured: nobody logs in"


def test_a_change_from_another_origin_is_refused_even_on_the_same_site() -> None:
    host = {"host": "127.0.0.1:9180"}
    assert cross_site(host) is None, "the CLI sends neither header"
    assert cross_site({**host, "origin": "http://127.0.0.1:9180",
                       "sec-fetch-site": "same-origin"}) is None
    # another port on the same host is the same *site*: SameSite=Strict lets its cookie through
    why = cross_site({**host, "origin": "http://127.0.0.1:8080", "sec-fetch-site": "same-site"})
    assert why is not None and "same-site" in why
    assert cross_site({**host, "origin": "http://127.0.0.1:8080"}) is not None
    assert cross_site({**host, "origin": "null"}) is not None
    assert cross_site({**host, "sec-fetch-site": "cross-site"}) is not None


def test_the_timeline_keeps_a_day_and_exports_csv() -> None:
    clock = Clock()
    tl = Timeline(clock)
    tl.add("mode", "mode normal -> under_attack (pinned)", "ann (console)")
    clock.t += 25 * 3600
    tl.add("ban", "ban 198.51.100.9/32 (operator)", "operator", "flood")
    assert [e.kind for e in tl.entries] == ["ban"]
    rows = list(csv.reader(io.StringIO(Timeline.to_csv(tl.since(3600)))))
    assert rows[0] == ["time_utc", "unix", "kind", "text", "who", "detail"]
    assert rows[1][2:] == ["ban", "ban 198.51.100.9/32 (operator)", "operator", "flood"]


def test_a_bans_origin_is_named_from_the_source_the_guard_recorded() -> None:
    from shieldwall.console import origin_of

    assert [origin_of(s) for s in ("admin", "auto", "detector", "list", "nftables")] == \
        ["operator", "detector", "detector", "list", "kernel"]


def test_the_totals_are_read_from_the_metrics_the_shield_exports() -> None:
    text = (
        '# TYPE shieldwall_rejected counter\nshieldwall_rejected_total{reason="conn"} 3.0\n'
        'shieldwall_rejected_total{reason="header_timeout"} 2.0\n'
        '# TYPE shieldwall_guard_events_total counter\n'
        'shieldwall_guard_events_total{kind="challenge"} 10\n'
        'shieldwall_guard_events_total{kind="verify:ok:pow"} 4\n'
        'shieldwall_guard_events_total{kind="verify:fail:wrong"} 1\n'
        'shieldwall_guard_events_total{kind="verify:solve_ms"} 2000\n'
        '# TYPE shieldwall_upstream_healthy gauge\nshieldwall_upstream_healthy{backend="b:1"} 0.0\n'
    )
    t = metric_totals(text)
    assert (t["rejected"], t["issued"], t["solved"], t["failed"], t["solve_ms"]) == (5, 10, 4, 1, 2000)
    assert t["healthy"] == {"b:1": False}


async def test_an_operators_change_is_in_the_audit_trail_with_who_and_the_answer() -> None:
    from shieldwall.console import Console

    async def call(method: str, path: str, body: bytes) -> AdminResponse:
        return AdminResponse.error(404, "none")

    async def gather(path: str) -> list[tuple[int, object]]:
        return []

    console = Console(ConsoleAuth("t"), call, gather, lambda: b"")
    req = AdminRequest("POST", "/api/mode", body=b'{"mode": "under_attack"}')
    console.audit("ann (console) from 127.0.0.1", req, AdminResponse.of_json({"mode": "x"}))
    console.audit("token (python-httpx) from 127.0.0.1",
                  AdminRequest("POST", "/api/ban", body=b'{"value": "10.0.0.1", "ttl": 60}'),
                  AdminResponse.error(400, "bad"))
    texts = [(e.text, e.who) for e in console.timeline.entries]
    assert texts == [("mode set to under_attack", "ann (console) from 127.0.0.1"),
                     ("ban 10.0.0.1 for 60s: refused (400)", "token (python-httpx) from 127.0.0.1")]
    live = await console.live()
    assert live["mode"]["audit"][0]["who"] == "ann (console) from 127.0.0.1"
