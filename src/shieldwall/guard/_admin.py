"""The guard's routes on the admin listener (the proxy checks the token).

    GET  /api/status                   mode, pin, counters, store health
    POST /api/mode    {"mode": "normal|elevated|under_attack|auto"}
    POST /api/ban     {"value": ip-or-cidr, "ttl": seconds, "reason": str}
    POST /api/unban   {"value": ip-or-cidr}
    GET  /api/bans
    POST /api/allow   {"value": ip-or-cidr, "ttl": seconds, "reason": str}
    POST /api/unallow {"value": ip-or-cidr}
    GET  /api/allows

Bad input is a 400 whose message names the field, the value and what is
accepted; nothing is changed then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shieldwall.admin_api import AdminRequest, AdminResponse, AdminRoute
from shieldwall.guard.decision import Mode

if TYPE_CHECKING:
    from shieldwall.guard.runtime import GuardRuntime

MODES = "normal, elevated, under_attack (or under-attack) or auto"
DEFAULT_BAN_TTL = 3600.0
DEFAULT_ALLOW_TTL = 30 * 86400.0


class BadRequest(ValueError):
    pass


def _body(req: AdminRequest) -> dict[str, Any]:
    try:
        data = req.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _value(data: dict[str, Any]) -> str:
    v = data.get("value")
    if not isinstance(v, str) or not v.strip():
        raise BadRequest('"value" is required: an IP address or CIDR, e.g. "192.0.2.7" '
                         'or "198.51.100.0/24"')
    return v.strip()


def _ttl(data: dict[str, Any], default: float) -> float:
    v = data.get("ttl", default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise BadRequest(f'"ttl" must be a positive number of seconds, got {v!r}')
    return float(v)


def _reason(data: dict[str, Any]) -> str:
    v = data.get("reason", "")
    if not isinstance(v, str) or len(v) > 200:
        raise BadRequest('"reason" must be a string of at most 200 characters')
    return v


def admin_routes(rt: GuardRuntime) -> list[AdminRoute]:
    async def status(req: AdminRequest) -> AdminResponse:
        return AdminResponse.of_json(rt.status())

    async def mode(req: AdminRequest) -> AdminResponse:
        data = _body(req)
        raw = data.get("mode")
        if not isinstance(raw, str):
            raise BadRequest(f'"mode" is required: one of {MODES}')
        name = raw.strip().lower().replace("-", "_")
        if name == "auto":
            rt.set_mode(None, "operator")
        else:
            try:
                m = Mode(name)
            except ValueError:
                raise BadRequest(f'"mode" {raw!r} is not one of {MODES}') from None
            rt.set_mode(m, "operator")
        return AdminResponse.of_json({"mode": rt.state.mode.value,
                                      "pinned": rt.state.pinned is not None})

    async def ban(req: AdminRequest) -> AdminResponse:
        data = _body(req)
        value, ttl, reason = _value(data), _ttl(data, DEFAULT_BAN_TTL), _reason(data)
        key = rt.ban(value, ttl, reason, source="admin")
        return AdminResponse.of_json({"banned": key, "ttl": ttl, "reason": reason})

    async def unban(req: AdminRequest) -> AdminResponse:
        value = _value(_body(req))
        found = rt.unban(value)
        return AdminResponse.of_json({"unbanned": value, "found": found},
                                     200 if found else 404)

    async def bans(req: AdminRequest) -> AdminResponse:
        return AdminResponse.of_json({"bans": rt.bans()})

    async def allow(req: AdminRequest) -> AdminResponse:
        data = _body(req)
        value, ttl, reason = _value(data), _ttl(data, DEFAULT_ALLOW_TTL), _reason(data)
        key = rt.allow(value, ttl, reason, source="admin")
        return AdminResponse.of_json({"allowed": key, "ttl": ttl, "reason": reason})

    async def unallow(req: AdminRequest) -> AdminResponse:
        value = _value(_body(req))
        found = rt.unallow(value)
        return AdminResponse.of_json({"unallowed": value, "found": found},
                                     200 if found else 404)

    async def allows(req: AdminRequest) -> AdminResponse:
        return AdminResponse.of_json({"allows": rt.allows()})

    def guarded(fn: Any) -> Any:
        async def handler(req: AdminRequest) -> AdminResponse:
            try:
                resp: AdminResponse = await fn(req)
                return resp
            except BadRequest as e:
                return AdminResponse.error(400, str(e))
            except ValueError as e:
                return AdminResponse.error(400, str(e))
        return handler

    return [
        AdminRoute("GET", "/api/status", guarded(status)),
        AdminRoute("POST", "/api/mode", guarded(mode)),
        AdminRoute("POST", "/api/ban", guarded(ban)),
        AdminRoute("POST", "/api/unban", guarded(unban)),
        AdminRoute("GET", "/api/bans", guarded(bans)),
        AdminRoute("POST", "/api/allow", guarded(allow)),
        AdminRoute("POST", "/api/unallow", guarded(unallow)),
        AdminRoute("GET", "/api/allows", guarded(allows)),
    ]


def peer_routes(rt: GuardRuntime) -> list[AdminRoute]:
    """Worker-to-worker routes, served only on the workers' private unix
    sockets (a directory only this user can open: no token):

        GET  /peer/guard/snapshot   bans, allows, pin, verdicts, suspects for a restarted worker
        POST /peer/guard/report     {"node", "mode"?, "at"?, "suspects"?: [[address, score, until]],
                                     "counters"?: {kind: n}}
    """

    async def snapshot(req: AdminRequest) -> AdminResponse:
        return AdminResponse.of_json(rt.snapshot())

    async def report(req: AdminRequest) -> AdminResponse:
        try:
            data = _body(req)
            node = data.get("node")
            if not isinstance(node, str):
                raise BadRequest('"node" (string) is required')
            suspects = data.get("suspects", [])
            if not isinstance(suspects, list):
                raise BadRequest('"suspects" must be a list of [address, score, until]')
            verdict = None
            if "mode" in data:
                at = data.get("at")
                if isinstance(at, bool) or not isinstance(at, int | float):
                    raise BadRequest('"at" (unix time) is required with "mode"')
                verdict = (Mode(str(data["mode"])), float(at))
        except ValueError as e:
            return AdminResponse.error(400, str(e))
        if verdict is not None:
            rt.peer_verdict(node, *verdict)
        if isinstance(data.get("counters"), dict):
            rt.peer_counters(node, data["counters"])
        taken = rt.peer_suspects(suspects) if suspects else 0
        return AdminResponse.of_json({"mode": rt.state.mode.value, "suspects": taken})

    return [
        AdminRoute("GET", "/peer/guard/snapshot", snapshot, auth=False),
        AdminRoute("POST", "/peer/guard/report", report, auth=False),
    ]
