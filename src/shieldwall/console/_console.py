"""The operator's console: its routes on the admin listener and the sampler
that keeps the timeline.

Served by the worker that owns the admin listener (worker 0). It reads
everything through the same admin routes the CLI uses (``/api/status``,
``/api/verdict``, ``/api/bans``, each worker's ``/api/console/local``) and
the same ``/metrics`` text Prometheus scrapes, so it shows nothing the API
does not, and its buttons call the same routes (``/api/mode``, ``/api/ban``,
``/api/unban``), which fan out to every worker.

Routes (all need the session cookie or the bearer token, except the login):

    GET  /console                 the page (without a session: the login form, 401)
    POST /console/login           token=...&operator=... -> cookie, 303 to /console
    POST /console/logout
    GET  /console/api/session     {"operator", "csrf"}
    GET  /console/api/live        everything the page shows, every worker added up
    GET  /console/api/timeline    ?format=json|csv&hours=N (an attachment)
    GET  /console/static/...      the page's script, style and the vendored uPlot
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from shieldwall.admin_api import AdminRequest, AdminResponse, AdminRoute
from shieldwall.console._auth import ConsoleAuth, cross_site
from shieldwall.console._recorder import (
    CLASSES,
    DIMENSIONS,
    LATENCY_BOUNDS,
    OUTCOMES,
    TOP_N,
    percentile,
)
from shieldwall.console._timeline import Timeline

log = logging.getLogger(__name__)

CHART_SECONDS = 300
"""Seconds of history the page charts."""
SAMPLES_KEPT = 900

HTML_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("Referrer-Policy", "same-origin"),
)
LOGIN_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
     "frame-ancestors 'none'; base-uri 'none'"),
    ("Referrer-Policy", "same-origin"),
)
"""Referrer-Policy same-origin, not no-referrer: with no-referrer a browser sends
``Origin: null`` on the form post, which the origin check must refuse.
The login page is self-contained (its style inline, no script): the page's
files are served only to a logged-in browser."""
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8",
          "": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8"}

Call = Callable[[str, str, bytes], Awaitable[AdminResponse]]
"""(method, path with query, body) -> this listener's answer, made with the token."""
Gather = Callable[[str], Awaitable[list[tuple[int, Any]]]]
"""path -> [(worker, JSON body)] from every worker that answered, this one first."""


def _static_files() -> dict[str, tuple[bytes, str]]:
    out: dict[str, tuple[bytes, str]] = {}
    root = resources.files("shieldwall.console") / "static"

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
            else:
                ext = "." + child.name.rsplit(".", 1)[1] if "." in child.name else ""
                out[name] = (child.read_bytes(), _TYPES.get(ext, "application/octet-stream"))

    walk(root, "")
    return out


class Console:
    def __init__(self, auth: ConsoleAuth, call: Call, gather: Gather,
                 metrics: Callable[[], bytes], clock: Callable[[], float] = time.time) -> None:
        self.auth = auth
        self.call = call
        self.gather = gather
        self.metrics = metrics
        self.clock = clock
        self.timeline = Timeline(clock)
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES_KEPT)
        """Once a second: totals read from /metrics (rejections, failovers, funnel)."""
        self.state: dict[str, Any] = {}
        """The latest status, verdict and bans the sampler read."""
        self._task: asyncio.Task[None] | None = None
        self._static = _static_files()
        self.index = self._static.pop("index.html")[0]
        self.login_html = self._static.pop("login.html")[0].decode()
        self.routes = [
            AdminRoute("GET", "/console", self._page),
            AdminRoute("GET", "/console/", self._page),
            AdminRoute("POST", "/console/login", self._login, auth=False),
            AdminRoute("POST", "/console/logout", self._logout),
            AdminRoute("GET", "/console/api/session", self._session),
            AdminRoute("GET", "/console/api/live", self._live),
            AdminRoute("GET", "/console/api/timeline", self._export),
        ] + [AdminRoute("GET", "/console/static/" + name, self._file(name))
             for name in sorted(self._static)]

    # -- pages and login ----------------------------------------------------------

    def login_page(self, status: int = 401, message: str = "") -> AdminResponse:
        note = f'<p class="error">{_esc(message)}</p>' if message else ""
        body = self.login_html.replace("<!--message-->", note).encode()
        return AdminResponse(status, body, "text/html; charset=utf-8", LOGIN_HEADERS)

    async def _page(self, req: AdminRequest) -> AdminResponse:
        return AdminResponse(200, self.index, "text/html; charset=utf-8", HTML_HEADERS)

    def _file(self, name: str) -> Callable[[AdminRequest], Awaitable[AdminResponse]]:
        body, ctype = self._static[name]

        async def serve(req: AdminRequest) -> AdminResponse:
            return AdminResponse(200, body, ctype)

        return serve

    async def _login(self, req: AdminRequest) -> AdminResponse:
        why = cross_site(req.headers)
        if why is not None:
            return AdminResponse.error(403, why)
        if self.auth.login_blocked():
            return self.login_page(429, "Too many wrong tokens; wait a minute.")
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), max_num_fields=4))
        s = self.auth.login(form.get("token", ""), form.get("operator", ""))
        if s is None:
            return self.login_page(401, "That is not the admin token.")
        self.timeline.add("login", f"{s.operator} logged in to the console", s.operator,
                          req.client)
        return AdminResponse(303, b"", "text/plain",
                             (("Location", "/console"), ("Set-Cookie", self.auth.set_cookie(s))))

    async def _logout(self, req: AdminRequest) -> AdminResponse:
        s = self.auth.session(req.headers)
        if s is not None:
            self.auth.logout(s)
        return AdminResponse(200, b'{"logged_out": true}\n', "application/json",
                             (("Set-Cookie", self.auth.clear_cookie()),))

    async def _session(self, req: AdminRequest) -> AdminResponse:
        s = self.auth.session(req.headers)
        if s is None:  # a bearer token: no cookie session, no CSRF token needed
            return AdminResponse.of_json({"operator": "token", "csrf": ""})
        return AdminResponse.of_json({"operator": s.operator, "csrf": s.csrf})

    # -- the audit trail ----------------------------------------------------------

    def audit(self, who: str, req: AdminRequest, resp: AdminResponse) -> None:
        """An operator's change through the admin listener (called by the listener)."""
        if req.path.startswith("/console/"):
            return
        try:
            body = req.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        action = req.path.rsplit("/", 1)[-1]
        if action == "mode":
            text = f"mode set to {body.get('mode')}"
        elif action in ("ban", "unban", "allow", "unallow"):
            ttl = body.get("ttl")
            text = f"{action} {body.get('value')}" + (f" for {ttl:g}s" if isinstance(ttl, int | float)
                                                      and action in ("ban", "allow") else "")
            if body.get("reason"):
                text += f" ({body['reason']})"
        else:
            text = f"{req.method} {req.path}"
        ok = resp.status < 300
        self.timeline.add("action", text if ok else f"{text}: refused ({resp.status})", who,
                          f"{req.method} {req.path} -> {resp.status}")

    # -- the sampler --------------------------------------------------------------

    async def _get(self, path: str) -> Any:
        try:
            resp = await self.call("GET", path, b"")
        except Exception:
            log.exception("console: %s failed", path)
            return None
        if resp.status != 200:
            return None
        try:
            return json.loads(resp.body)
        except ValueError:
            return None

    async def sample(self) -> None:
        """Read status, verdict, bans and /metrics once; note what changed."""
        status, verdict, bans = await asyncio.gather(
            self._get("/api/status"), self._get("/api/verdict"), self._get("/api/bans"))
        try:
            totals = metric_totals(self.metrics().decode())
        except Exception:
            log.exception("console: reading /metrics failed")
            totals = {}
        totals["at"] = self.clock()
        self.samples.append(totals)
        self._note_changes(status, verdict, bans)
        self.state = {"status": status, "verdict": verdict, "bans": bans, "metrics": totals}

    def _note_changes(self, status: Any, verdict: Any, bans: Any) -> None:
        before = self.state
        old_status = before.get("status") or {}
        if isinstance(status, dict):
            mode = (status.get("mode"), bool(status.get("pinned")))
            old = (old_status.get("mode"), bool(old_status.get("pinned")))
            if not old_status:
                self.timeline.add("mode", f"console started: mode {mode[0]}"
                                  + (" (pinned)" if mode[1] else " (auto)"))
            elif mode != old:
                who = "operator pin" if mode[1] else "detector"
                self.timeline.add("mode", f"mode {old[0]} -> {mode[0]}"
                                  + (" (pinned)" if mode[1] else " (auto)"), who)
        old_verdict = before.get("verdict") or {}
        if isinstance(verdict, dict):
            key = (verdict.get("verdict"), verdict.get("kind"))
            if key != (old_verdict.get("verdict"), old_verdict.get("kind")) and \
                    (old_verdict or key[0] != "normal"):
                ev = "; ".join(str(e) for e in (verdict.get("evidence") or [])[:3])
                self.timeline.add("verdict", f"detector: {key[0]}"
                                  + (f" ({key[1]})" if key[1] else ""), "detector", ev)
        if isinstance(bans, dict) and isinstance(bans.get("bans"), list):
            now_set = {str(b.get("value")): b for b in bans["bans"] if isinstance(b, dict)}
            old_bans = before.get("bans") or {}
            old_set = {str(b.get("value")) for b in old_bans.get("bans") or []
                       if isinstance(b, dict)}
            if before:
                for v in sorted(set(now_set) - old_set):
                    b = now_set[v]
                    origin = origin_of(str(b.get("source")))
                    self.timeline.add("ban", f"ban {v} ({origin})", origin,
                                      str(b.get("reason") or ""))
                for v in sorted(old_set - set(now_set)):
                    self.timeline.add("unban", f"ban on {v} ended", "")

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="shieldwall-console")

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:
                log.exception("console sampler failed")
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the live view ------------------------------------------------------------

    async def _live(self, req: AdminRequest) -> AdminResponse:
        return AdminResponse.of_json(await self.live())

    async def live(self) -> dict[str, Any]:
        now = self.clock()
        views = await self.gather(f"/api/console/local?since={int(now) - CHART_SECONDS - 2}")
        # the last second every worker has folded whole (each ticks once a second)
        ticked = [float(v.get("ticked") or 0) for _, v in views]
        end = int(min(ticked)) - 1 if ticked and min(ticked) > now - 5 else int(now) - 1
        start = end - CHART_SECONDS + 1
        state = self.state
        status = state.get("status") or {}
        verdict = state.get("verdict") or {}
        bans_body = state.get("bans") or {}
        return {
            "now": now,
            "mode": self._mode(status, verdict),
            "verdict": verdict,
            "series": merge_series([v for _, v in views], start, end),
            "top": merge_top([v for _, v in views]),
            "bans": [dict(b, origin=origin_of(str(b.get("source", ""))))
                     for b in bans_body.get("bans") or [] if isinstance(b, dict)],
            "lists": {k: status.get(k) for k in ("static_block", "static_allow", "allows",
                                                 "suspects")},
            "kernel": status.get("nftables") or {"enabled": False},
            "backends": self._backends([v for _, v in views]),
            "funnel": self._funnel(),
            "refused": self._rates(("rejected",)),
            "workers": self._workers(views, status, verdict),
            "store": status.get("store"),
            "timeline": [e.as_json() for e in self.timeline.last(200)],
        }

    def _mode(self, status: dict[str, Any], verdict: dict[str, Any]) -> dict[str, Any]:
        pinned = bool(status.get("pinned"))
        changes = [e for e in self.timeline.last(50, "action") if e.text.startswith("mode set")]
        last = changes[0] if changes else None
        if pinned:
            reason = (f"pinned by {last.who} at {_hms(last.at)}" if last is not None
                      else "pinned (at start, or by another shield node)")
        elif verdict:
            v = verdict.get("verdict", "normal")
            reason = f"auto: the detector says {v}" + (
                f" ({verdict['kind']})" if verdict.get("kind") else "")
        else:
            reason = "auto (the detector is off)"
        return {"mode": status.get("mode"), "pinned": pinned,
                "detector_mode": status.get("detector_mode"), "reason": reason,
                "audit": [e.as_json() for e in changes[:10]]}

    def _window(self, seconds: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if len(self.samples) < 2:
            return None
        last = self.samples[-1]
        first = self.samples[max(0, len(self.samples) - 1 - seconds)]
        return first, last

    def _rates(self, keys: tuple[str, ...]) -> dict[str, float]:
        w = self._window(10)
        if w is None:
            return {k: 0.0 for k in keys}
        first, last = w
        dt = max(1e-9, last["at"] - first["at"])
        return {k: round((last.get(k, 0) - first.get(k, 0)) / dt, 2) for k in keys}

    def _funnel(self) -> dict[str, Any]:
        last = self.samples[-1] if self.samples else {}
        keys = ("issued", "solved", "failed", "solve_ms")
        out: dict[str, Any] = {"total": {k: last.get(k, 0) for k in keys}}
        w = self._window(60)
        if w is not None:
            first, last = w
            d = {k: last.get(k, 0) - first.get(k, 0) for k in keys}
            out["last_60s"] = {k: d[k] for k in ("issued", "solved", "failed")}
            out["solve_seconds_mean"] = round(d["solve_ms"] / d["solved"] / 1000, 2) \
                if d["solved"] else None
        tot = out["total"]
        out["solve_seconds_mean_total"] = round(tot["solve_ms"] / tot["solved"] / 1000, 2) \
            if tot["solved"] else None
        return out

    def _backends(self, views: list[dict[str, Any]]) -> dict[str, Any]:
        m = self.samples[-1] if self.samples else {}
        traffic: dict[str, list[int]] = {}
        for v in views:
            for key, (n, err) in (v.get("backends") or {}).items():
                cur = traffic.setdefault(key, [0, 0])
                cur[0] += n
                cur[1] += err
        keys = sorted(set(m.get("healthy", {})) | set(traffic))
        rows = [{"backend": k, "healthy": m.get("healthy", {}).get(k),
                 "in_flight": m.get("in_flight", {}).get(k, 0),
                 "requests_60s": traffic.get(k, [0, 0])[0],
                 "errors_60s": traffic.get(k, [0, 0])[1]} for k in keys]
        w = self._window(60)
        failovers_60s = (w[1].get("retries", 0) - w[0].get("retries", 0)) if w else 0
        return {"backends": rows, "failovers_total": m.get("retries", 0),
                "failovers_60s": failovers_60s, "stale_total": m.get("stale", 0)}

    def _workers(self, views: list[tuple[int, Any]], status: dict[str, Any],
                 verdict: dict[str, Any]) -> list[dict[str, Any]]:
        st_views = {int(v["worker"]): v for v in
                    ((status.get("workers") or {}).get("views") or []) if "worker" in v}
        vd_views = {int(v["worker"]): v for v in
                    ((verdict.get("workers") or {}).get("views") or []) if "worker" in v}
        ticked = [float(v.get("ticked") or 0) for _, v in views]
        end = int(min(ticked)) - 1 if ticked else int(self.clock()) - 1
        rows = []
        for worker, v in views:
            last5 = [s for s in v.get("seconds") or [] if end - 5 < s[0] <= end]
            rps = sum(sum(s[1].values()) for s in last5) / 5.0
            sv, vv = st_views.get(worker, {}), vd_views.get(worker, {})
            rows.append({"worker": worker, "pid": v.get("pid"), "rps": round(rps, 1),
                         "mode": sv.get("mode", status.get("mode")),
                         "verdict": vv.get("verdict", verdict.get("verdict")),
                         "events_dropped": v.get("events_dropped", 0)})
        return sorted(rows, key=lambda r: int(r["worker"]))

    async def _export(self, req: AdminRequest) -> AdminResponse:
        try:
            hours = float(req.query.get("hours", "24"))
        except ValueError:
            return AdminResponse.error(400, '"hours" must be a number, e.g. 3')
        fmt = req.query.get("format", "json")
        entries = self.timeline.since(hours * 3600)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        if fmt == "csv":
            return AdminResponse(200, Timeline.to_csv(entries).encode(), "text/csv; charset=utf-8",
                                 (("Content-Disposition",
                                   f'attachment; filename="shieldwall-timeline-{stamp}.csv"'),))
        if fmt != "json":
            return AdminResponse.error(400, f'"format" must be json or csv, got {fmt!r}')
        body = json.dumps({"timeline": [e.as_json() for e in entries]}, indent=1).encode()
        return AdminResponse(200, body, "application/json",
                             (("Content-Disposition",
                               f'attachment; filename="shieldwall-timeline-{stamp}.json"'),))


def origin_of(source: str) -> str:
    """A ban's origin as the console names it (the guard records its source)."""
    s = source.lower()
    if s in ("admin", "operator", "console", "cli"):
        return "operator"
    if s.startswith("detect") or s == "auto":  # the guard's auto-ban of detector suspects
        return "detector"
    if s in ("list", "config", "file"):
        return "list"
    if s.startswith(("kernel", "nft")):
        return "kernel"
    return s or "unknown"


def metric_totals(text: str) -> dict[str, Any]:
    """The totals the console charts, read from the Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {"rejected": 0.0, "retries": 0.0, "stale": 0.0, "issued": 0.0,
                           "solved": 0.0, "failed": 0.0, "solve_ms": 0.0, "healthy": {},
                           "in_flight": {}}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name, labels, value = s.name, s.labels, s.value
            if name == "shieldwall_rejected_total":
                out["rejected"] += value
            elif name == "shieldwall_upstream_retries_total":
                out["retries"] = value
            elif name == "shieldwall_stale_hits_total":
                out["stale"] = value
            elif name == "shieldwall_upstream_healthy":
                out["healthy"][labels.get("backend", "")] = value == 1.0
            elif name == "shieldwall_upstream_outstanding":
                out["in_flight"][labels.get("backend", "")] = int(value)
            elif name == "shieldwall_guard_events_total":
                kind = labels.get("kind", "")
                if kind == "challenge":
                    out["issued"] += value
                elif kind.startswith("verify:ok:"):
                    out["solved"] += value
                elif kind.startswith("verify:fail:"):
                    out["failed"] += value
                elif kind == "verify:solve_ms":
                    out["solve_ms"] = value
    return out


def merge_series(views: list[dict[str, Any]], start: int, end: int) -> dict[str, Any]:
    """Every worker's seconds added up, one point per second from start to end."""
    n = max(0, end - start + 1)
    outcomes = {o: [0] * n for o in OUTCOMES}
    classes = {c: [0] * n for c in CLASSES}
    lat: list[dict[int, int]] = [{} for _ in range(n)]
    for v in views:
        for at, outs, clss, latency in v.get("seconds") or []:
            i = int(at) - start
            if not 0 <= i < n:
                continue
            for k, c in outs.items():
                if k in outcomes:
                    outcomes[k][i] += c
            for k, c in clss.items():
                classes.setdefault(k, [0] * n)[i] += c
            for b, c in latency.items():
                lat[i][int(b)] = lat[i].get(int(b), 0) + c
    total = [sum(o[i] for o in outcomes.values()) for i in range(n)]
    last10: dict[int, int] = {}
    for d in lat[-10:]:
        for b, c in d.items():
            last10[b] = last10.get(b, 0) + c
    return {
        "t": list(range(start, end + 1)),
        "total": total,
        "outcomes": outcomes,
        "classes": classes,
        "p50": [percentile(d, 0.5) for d in lat],
        "p90": [percentile(d, 0.9) for d in lat],
        "p99": [percentile(d, 0.99) for d in lat],
        "latency_10s": {"p50": percentile(last10, 0.5), "p90": percentile(last10, 0.9),
                        "p99": percentile(last10, 0.99)},
        "latency_bounds": LATENCY_BOUNDS[-1],
    }


def merge_top(views: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    """Each worker's top talkers added up (a key in one worker's top list only is
    counted from that worker: close enough to rank the offenders)."""
    out: dict[str, list[list[Any]]] = {}
    for dim in DIMENSIONS:
        acc: dict[str, list[int]] = {}
        for v in views:
            for key, n, refused in (v.get("top") or {}).get(dim, []):
                cur = acc.setdefault(key, [0, 0])
                cur[0] += n
                cur[1] += refused
        best = sorted(acc.items(), key=lambda kv: -kv[1][0])[:TOP_N]
        out[dim] = [[k, n, r] for k, (n, r) in best]
    return out


def _hms(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))


def _esc(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
