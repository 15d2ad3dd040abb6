"""The `guard` part's commands: clients of a running shield's admin API.

    shieldwall status
    shieldwall mode normal|elevated|under-attack|auto
    shieldwall ban VALUE [--ttl 1h] [--reason TEXT]
    shieldwall unban VALUE
    shieldwall bans
    shieldwall allow VALUE [--ttl 30d] [--reason TEXT] / unallow VALUE

Each talks HTTP to the admin listener (``--admin``: ``host:port`` or
``[v6]:port`` as ``serve --admin`` takes it, or a URL; default
127.0.0.1:9180) with the Bearer token from ``--token`` or
SHIELDWALL_ADMIN_TOKEN. They never edit files: the running shield (and,
through Redis, every other one) changes at once.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import typer

from shieldwall.config import parse_hostport

DEFAULT_ADMIN = "127.0.0.1:9180"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MODES = ("normal", "elevated", "under-attack", "auto")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d``, ``1w`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if m is None or float(m.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not a duration; use e.g. 90s, 15m, 1h or 2d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def admin_url(value: str) -> str:
    """The base URL of the admin API from what ``--admin`` got: the
    ``host:port`` (or ``[v6]:port``) that ``serve --admin`` takes, or an
    http(s) URL."""
    if "://" in value:
        if not value.startswith(("http://", "https://")):
            raise typer.BadParameter(
                f"{value!r} is not accepted; expected host:port like 127.0.0.1:9180, "
                "or an http:// or https:// URL")
        return value.rstrip("/")
    try:
        host, port = parse_hostport(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not accepted; expected host:port like 127.0.0.1:9180 or "
            "[::1]:9180, or a URL like http://127.0.0.1:9180") from None
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Client:
    def __init__(self, admin: str, token: str | None) -> None:
        self.admin = admin.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if not self.token:
            _fail("no admin token: pass --token or set SHIELDWALL_ADMIN_TOKEN")
        try:
            r = httpx.request(method, self.admin + path, json=body, timeout=5.0,
                              headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as e:
            _fail(f"the shield is not reachable at {self.admin} ({e.__class__.__name__}: {e}); "
                  "is it running, and is --admin right?")
        if r.status_code in (401, 403):
            _fail(f"the shield at {self.admin} refused the admin token (HTTP {r.status_code})")
        try:
            data = r.json()
        except ValueError:
            _fail(f"unexpected answer from {self.admin}{path}: HTTP {r.status_code} "
                  f"{r.text[:200]!r}")
        if r.status_code >= 400 and r.status_code != 404:
            _fail(f"{path}: {data.get('error', data) if isinstance(data, dict) else data}")
        return data


def _fail(message: str) -> Any:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


AdminOpt = typer.Option(DEFAULT_ADMIN, "--admin", envvar="SHIELDWALL_ADMIN", callback=admin_url,
                        help="Admin API of the running shield: host:port (as serve --admin "
                             "takes it) or a URL.")
TokenOpt = typer.Option(None, "--token", envvar="SHIELDWALL_ADMIN_TOKEN",
                        help="Admin token (or SHIELDWALL_ADMIN_TOKEN).")


def register(app: typer.Typer) -> None:
    """Add this part's commands to ``app``."""

    @app.command("status")
    def status_cmd(admin: str = AdminOpt, token: str | None = TokenOpt,
                   as_json: bool = typer.Option(False, "--json", help="Print raw JSON.")) -> None:
        """Mode, pin, counters and store health of a running shield."""
        data = _Client(admin, token).call("GET", "/api/status")
        if as_json:
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        store = data.get("store", {})
        typer.echo(f"mode:     {data['mode']}{' (pinned by operator)' if data['pinned'] else ''}")
        typer.echo(f"store:    {store.get('kind')} "
                   f"{'healthy' if store.get('healthy') else 'DOWN: ' + store.get('last_error', '')}")
        typer.echo(f"bans:     {data['bans']}   allows: {data['allows']}   "
                   f"suspects: {data['suspects']}")
        for k, v in data.get("counters", {}).items():
            typer.echo(f"  {k:<24} {v}")

    @app.command("mode")
    def mode_cmd(mode: str = typer.Argument(..., help="normal, elevated, under-attack or auto"),
                 admin: str = AdminOpt, token: str | None = TokenOpt) -> None:
        """Pin the mode of a running shield (`auto` hands it back to the detector)."""
        if mode.replace("_", "-") not in MODES:
            raise typer.BadParameter(f"{mode!r}; expected one of {', '.join(MODES)}")
        data = _Client(admin, token).call("POST", "/api/mode", {"mode": mode})
        typer.echo(f"mode: {data['mode']}{' (pinned)' if data['pinned'] else ' (auto)'}")

    @app.command("ban")
    def ban_cmd(value: str = typer.Argument(..., help="IP address or CIDR"),
                ttl: str = typer.Option("1h", "--ttl", help="How long, e.g. 90s, 15m, 1h, 2d."),
                reason: str = typer.Option("", "--reason"),
                admin: str = AdminOpt, token: str | None = TokenOpt) -> None:
        """Block an address or network on a running shield."""
        data = _Client(admin, token).call(
            "POST", "/api/ban", {"value": value, "ttl": parse_duration(ttl), "reason": reason})
        typer.echo(f"banned {data['banned']} for {data['ttl']:g}s")

    @app.command("unban")
    def unban_cmd(value: str = typer.Argument(..., help="IP address or CIDR"),
                  admin: str = AdminOpt, token: str | None = TokenOpt) -> None:
        """Lift a ban on a running shield."""
        data = _Client(admin, token).call("POST", "/api/unban", {"value": value})
        if not data.get("found"):
            _fail(f"{value} was not banned")
        typer.echo(f"unbanned {value}")

    @app.command("bans")
    def bans_cmd(admin: str = AdminOpt, token: str | None = TokenOpt) -> None:
        """List the run-time bans of a running shield."""
        for b in _Client(admin, token).call("GET", "/api/bans")["bans"]:
            typer.echo(f"{b['value']:<24} {b['ttl']:>10.0f}s  {b['reason']}")

    @app.command("allow")
    def allow_cmd(value: str = typer.Argument(..., help="IP address or CIDR"),
                  ttl: str = typer.Option("30d", "--ttl"),
                  reason: str = typer.Option("", "--reason"),
                  admin: str = AdminOpt, token: str | None = TokenOpt) -> None:
        """Never challenge an address or network (monitoring, partners)."""
        data = _Client(admin, token).call(
            "POST", "/api/allow", {"value": value, "ttl": parse_duration(ttl), "reason": reason})
        typer.echo(f"allowed {data['allowed']} for {data['ttl']:g}s")

    @app.command("unallow")
    def unallow_cmd(value: str = typer.Argument(...), admin: str = AdminOpt,
                    token: str | None = TokenOpt) -> None:
        """Take an address or network off the run-time allow list."""
        data = _Client(admin, token).call("POST", "/api/unallow", {"value": value})
        if not data.get("found"):
            _fail(f"{value} was not on the allow list")
        typer.echo(f"unallowed {value}")
