"""The monitor's HTTP listener: public status page and metrics, the remote
probes' API and the token-protected incident API the CLI talks to."""

from __future__ import annotations

import dataclasses
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from shieldwall.monitor._history import daily_bars
from shieldwall.monitor._incident import Incident
from shieldwall.monitor._quorum import ProbeResult
from shieldwall.monitor._statuspage import render_status_page

if TYPE_CHECKING:
    from shieldwall.monitor._service import Monitor

MAX_REPORT_BYTES = 256 * 1024
MAX_RESULTS_PER_REPORT = 200
MAX_CLOCK_SKEW = 120.0  # seconds


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def incident_json(inc: Incident, now: float) -> dict[str, Any]:
    return {
        "id": inc.id,
        "check": inc.check,
        "started_at": inc.started_at,
        "declared_at": inc.declared_at,
        "ended_at": inc.ended_at,
        "duration": inc.duration(now),
        "reason": inc.reason,
        "probes": list(inc.probes),
        "acked_at": inc.acked_at,
        "acked_by": inc.acked_by,
        "verdict": inc.verdict,
        "verdict_kind": inc.verdict_kind,
        "quiet": inc.quiet,
    }


def build_app(mon: Monitor) -> Starlette:
    def probe_name(request: Request) -> str | None:
        token = _bearer(request)
        for known, name in mon.probe_tokens.items():
            if token and _same(token, known):
                return name
        return None

    def admin_ok(request: Request) -> bool:
        token = _bearer(request)
        return bool(token) and _same(token, mon.token)

    async def status_page(request: Request) -> Response:
        now = mon.wall()
        incs = mon.store.incidents(since=now - 91 * 86400)
        history = {
            name: daily_bars(
                [i for i in incs if i.check == name],
                now=now,
                observed=mon.store.observed(name, since=now - 91 * 86400),
                days=90,
            )
            for name in mon.checks
        }
        recent = [i for i in incs if not i.quiet][:5]
        html = render_status_page(mon.status(full=True), history, now=now, recent=recent)
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    async def status_json(request: Request) -> Response:
        return JSONResponse(mon.status(full=admin_ok(request)))

    async def metrics(request: Request) -> Response:
        return Response(mon.metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def probe_checks(request: Request) -> Response:
        name = probe_name(request)
        if name is None:
            return _err(401, "a remote probe token is required (Authorization: Bearer <token>)")
        checks = [c.public() for c in mon.settings.checks if name in mon.settings.probes_for(c)]
        return JSONResponse({"probe": name, "checks": checks, "server_time": time.time()})

    async def probe_report(request: Request) -> Response:
        name = probe_name(request)
        if name is None:
            return _err(401, "a remote probe token is required (Authorization: Bearer <token>)")
        body = await request.body()
        if len(body) > MAX_REPORT_BYTES:
            return _err(413, f"report larger than {MAX_REPORT_BYTES} bytes")
        try:
            data = json.loads(body)
            raw = data["results"]
            if not isinstance(raw, list) or len(raw) > MAX_RESULTS_PER_REPORT:
                raise ValueError(f"results must be a list of at most {MAX_RESULTS_PER_REPORT}")
            results = [ProbeResult.from_json(r, probe=name) for r in raw]
            now = mon.wall()
            # a remote clock far off would misdate the incident: trust ours then
            results = [r if abs(r.at - now) <= MAX_CLOCK_SKEW else dataclasses.replace(r, at=now) for r in results]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return _err(400, f"bad report: {e}; expected {{\"results\": [{{\"check\", \"ok\", \"at\", ...}}]}}")
        accepted = 0
        for r in results:
            if mon.accept(r):
                accepted += 1
                mon.metrics.reports.labels(name).inc()
        return JSONResponse({"accepted": accepted, "refused": len(results) - accepted})

    async def incidents(request: Request) -> Response:
        if not admin_ok(request):
            return _err(401, "the monitor API token is required (Authorization: Bearer <token>)")
        now = mon.wall()
        return JSONResponse({"incidents": [incident_json(i, now) for i in mon.store.incidents(limit=200)]})

    async def ack(request: Request) -> Response:
        if not admin_ok(request):
            return _err(401, "the monitor API token is required (Authorization: Bearer <token>)")
        try:
            incident_id = int(request.path_params["id"])
        except ValueError:
            return _err(400, "the incident id is a number")
        by = ""
        body = await request.body()
        if body.strip():
            try:
                by = str(json.loads(body).get("by", ""))[:100]
            except (ValueError, AttributeError):
                return _err(400, 'expected JSON like {"by": "alice"}')
        inc = mon.acknowledge(incident_id, by or "api")
        if inc is None:
            return _err(404, f"no incident #{incident_id}")
        if not inc.acked:
            return _err(409, f"incident #{incident_id} is already closed; nothing to acknowledge")
        return JSONResponse({"incident": incident_json(inc, mon.wall())})

    return Starlette(
        routes=[
            Route("/", status_page),
            Route("/api/status", status_json),
            Route("/metrics", metrics),
            Route("/api/probe/checks", probe_checks),
            Route("/api/probe/report", probe_report, methods=["POST"]),
            Route("/api/incidents", incidents),
            Route("/api/incidents/{id}/ack", ack, methods=["POST"]),
        ]
    )
