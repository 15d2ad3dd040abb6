"""The `monitor` part's commands: ``monitor``, ``probe`` and ``incidents``.

``incidents list/show/report`` read the monitor's SQLite directly (read only,
safe while it runs); ``incidents ack`` is a client of the running monitor's
HTTP API, because only the running monitor can stop its own escalation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from shieldwall.monitor._config import MonitorSettings
    from shieldwall.monitor._incident import Incident
    from shieldwall.monitor._store import Store

DATA_ENV = "SHIELDWALL_MONITOR_DATA"
DEFAULT_DATA = "monitor-data"


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _data_dir(value: str | None) -> str:
    return value or os.environ.get(DATA_ENV) or DEFAULT_DATA


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run_until_signal(main: object, stop: object) -> None:
    """Run ``main`` (a coroutine) with SIGINT/SIGTERM calling ``stop()``."""

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)  # type: ignore[arg-type]
        await main  # type: ignore[misc]

    asyncio.run(runner())


def monitor_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", help="monitor.toml with checks, probes and alerts."),
    check: list[str] = typer.Option([], "--check", help="Quick start: a URL to watch (repeatable)."),
    every: str = typer.Option("30s", "--every", help="Quick start: check interval, like 30s or 2m."),
    notify: list[str] = typer.Option([], "--notify", help="Quick start: an Apprise URL to page (repeatable)."),
    data: str | None = typer.Option(None, "--data", help="Directory for the incident database."),
    listen: str | None = typer.Option(None, "--listen", help="host:port for the status page and API."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every probe state change."),
    test_notify: bool = typer.Option(
        False, "--test-notify", help="Send a test page through every channel, say which failed, and exit (1 if any)."
    ),
) -> None:
    """Watch the shop from outside; open incidents; page a person."""
    from shieldwall.monitor._config import ConfigError, load, quick_start
    from shieldwall.monitor._service import DataDirBusy, Monitor

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if config is not None:
            if check or notify:
                raise ConfigError(["use either --config or --check/--notify, not both"], "command line")
            settings = load(config)
        else:
            if not check:
                raise ConfigError(
                    ["--check: give a URL to watch, or --config monitor.toml (got neither)"], "command line"
                )
            settings = quick_start(
                check,
                every=every,
                notify=notify,
                data_dir=_data_dir(data),
                listen=listen or "127.0.0.1:9190",
            )
    except ConfigError as e:
        err.print(f"[red]error:[/] {e}", markup=True)
        raise typer.Exit(2) from None
    if listen is not None:
        settings = settings.model_copy(update={"monitor": settings.monitor.model_copy(update={"listen": listen})})
    _setup_logging(verbose)
    if test_notify:
        _test_notify(settings)
        return
    data_dir = data or settings.monitor.data_dir
    try:
        mon = Monitor(settings, data_dir=data_dir)
        mon.bind()
    except (OSError, DataDirBusy) as e:
        err.print(f"[red]error:[/] cannot start the monitor: {e}", markup=True)
        raise typer.Exit(1) from None
    err.print(f"monitor: status page and API on {mon.url}; data in {data_dir}")
    _run_until_signal(mon.run(), mon.stop)


def _test_notify(settings: MonitorSettings) -> None:
    """Every target (the fallback too), one test page each; exit 1 if any failed."""
    from shieldwall.monitor._alerts import test_every_channel

    targets = {name: settings.alerts.urls(name) for name in settings.alerts.targets}
    results = test_every_channel(targets, now=time.time())
    fallback = set(settings.alerts.fallback)
    table = Table(title="Test page through every channel")
    for col in ("target", "role", "result", "what went wrong"):
        table.add_column(col)
    for name, ok, error in results:
        role = "fallback" if name in fallback else "escalation"
        table.add_row(name, role, "delivered" if ok else "FAILED", error)
    _console().print(table)
    failed = [name for name, ok, _ in results if not ok]
    if failed:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"error: {len(failed)} of {len(results)} channel(s) failed: {', '.join(failed)}"
        )
        raise typer.Exit(1)
    _console().print(f"all {len(results)} channel(s) delivered the test page")


def probe_cmd(
    monitor: str = typer.Option(..., "--monitor", help="The monitor's URL, like http://monitor.example:9190."),
    token: str = typer.Option(
        ..., "--token", envvar="SHIELDWALL_PROBE_TOKEN", help="This probe's token from the monitor config."
    ),
    name: str | None = typer.Option(None, "--name", help="Refuse to run unless the token is for this probe."),
    refresh: str = typer.Option("60s", "--refresh", help="How often to re-read the check list."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a remote probe: pull the checks from a monitor, report results to it."""
    from shieldwall.monitor._duration import parse_duration
    from shieldwall.monitor._remote import ProbeAuthError, RemoteProbe

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        every = parse_duration(refresh)
    except ValueError as e:
        err.print(f"error: --refresh: {e}")
        raise typer.Exit(2) from None
    _setup_logging(verbose)
    probe = RemoteProbe(monitor, token, name=name, refresh=every)
    try:
        _run_until_signal(probe.run(), probe.stop)
    except ProbeAuthError as e:
        err.print(f"error: {e}")
        raise typer.Exit(2) from None


incidents_app = typer.Typer(help="Incidents: list, show, month report, acknowledge.", no_args_is_help=False)


def _open_store(data: str | None) -> Store:
    from shieldwall.monitor._store import Store

    path = _data_dir(data)
    try:
        return Store.in_dir(path, readonly=True)
    except (FileNotFoundError, OSError) as e:
        Console(stderr=True).print(f"error: {e} (is --data the monitor's data directory?)")
        raise typer.Exit(1) from None


def _state(inc: Incident) -> str:
    if not inc.open:
        return "closed"
    return "open, acked" if inc.acked else "OPEN"


@incidents_app.callback(invoke_without_command=True)
def incidents_root(
    ctx: typer.Context,
    data: str | None = typer.Option(None, "--data", help="The monitor's data directory."),
) -> None:
    """Without a subcommand: list the latest incidents."""
    if ctx.invoked_subcommand is None:
        list_cmd(data=data, limit=20)


@incidents_app.command("list")
def list_cmd(
    data: str | None = typer.Option(None, "--data", help="The monitor's data directory."),
    limit: int = typer.Option(20, "--limit", min=1),
) -> None:
    """The latest incidents, newest first."""
    from shieldwall.monitor._duration import format_duration
    store = _open_store(data)
    now = time.time()
    incs = store.incidents(limit=limit)
    table = Table(title=f"Incidents ({len(incs)} shown)")
    for col in ("id", "check", "started (UTC)", "duration", "state", "verdict", "reason"):
        table.add_column(col)
    for i in incs:
        verdict = f"{i.verdict}{'/' + i.verdict_kind if i.verdict_kind else ''}" if i.verdict else "-"
        table.add_row(
            str(i.id), i.check, _when(i.started_at), format_duration(i.duration(now)), _state(i), verdict, i.reason
        )
    out = _console()
    out.print(table if incs else "No incidents recorded.")
    for n in store.undelivered():
        owed = [d for d in n.deliveries if d.status in ("pending", "sending", "failed")] or n.deliveries
        for d in owed:
            out.print(
                f"UNDELIVERED: {n.key} to {d.target} for incident #{n.incident_id} since {_when(n.created_at)} "
                f"({d.attempts} attempt(s), still retrying; last error: {d.error or n.error or '-'})"
            )
    store.close()


@incidents_app.command("show")
def show_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    data: str | None = typer.Option(None, "--data", help="The monitor's data directory."),
) -> None:
    """One incident with every notification sent for it."""
    from shieldwall.monitor._duration import format_duration
    store = _open_store(data)
    inc = store.incident(incident_id)
    if inc is None:
        Console(stderr=True).print(f"error: no incident #{incident_id}")
        raise typer.Exit(1)
    now = time.time()
    out = _console()
    t = Table(title=f"Incident #{inc.id}: {inc.check}", show_header=False)
    t.add_column("field")
    t.add_column("value")
    rows = [
        ("state", _state(inc)),
        ("first failure", _when(inc.started_at)),
        ("declared", f"{_when(inc.declared_at)} (detected in {format_duration(inc.time_to_detect)})"),
        ("ended", _when(inc.ended_at)),
        ("duration", format_duration(inc.duration(now))),
        ("acknowledged", f"{_when(inc.acked_at)} by {inc.acked_by}" if inc.acked else "no"),
        ("confirmed by", ", ".join(inc.probes)),
        ("reason", inc.reason),
        ("shield verdict", f"{inc.verdict} ({inc.verdict_kind})" if inc.verdict else "unknown"),
        ("maintenance", "yes, no pages" if inc.quiet else "no"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)
    n = Table(title="Notifications")
    for col in ("step", "to", "status", "queued (UTC)", "sent (UTC)", "attempts", "error"):
        n.add_column(col)
    for note in store.notifications(inc.id):
        n.add_row(
            note.key,
            ", ".join(note.targets),
            note.status,
            _when(note.created_at),
            _when(note.sent_at),
            str(note.attempts),
            note.error,
        )
    out.print(n)
    store.close()


@incidents_app.command("report")
def report_cmd(
    month: str | None = typer.Option(None, "--month", help="The month, YYYY-MM (default: this one)."),
    data: str | None = typer.Option(None, "--data", help="The monitor's data directory."),
    revenue_per_minute: float | None = typer.Option(
        None, "--revenue-per-minute", help="Override the configured revenue per minute."
    ),
) -> None:
    """Uptime, incidents, MTTD/MTTR, minutes down and revenue at risk for a month."""
    from shieldwall.monitor._duration import format_duration
    from shieldwall.monitor._history import month_report
    month = month or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    store = _open_store(data)
    rpm = revenue_per_minute
    if rpm is None:
        rpm = float(store.meta("revenue_per_minute") or 0.0)
    currency = store.meta("currency") or ""
    try:
        rep = month_report(
            store.incidents(), month, observed=store.observed(), now=time.time(), revenue_per_minute=rpm
        )
    except ValueError as e:
        Console(stderr=True).print(f"error: --month: {e}")
        raise typer.Exit(2) from None
    out = _console()
    t = Table(title=f"Report for {month}", show_header=False)
    t.add_column("measure")
    t.add_column("value", justify="right")

    def opt(v: float | None) -> str:
        return "-" if v is None else format_duration(v)

    uptime = rep.uptime_pct
    t.add_row("observed", format_duration(rep.observed_seconds))
    t.add_row("uptime", "-" if uptime is None else f"{uptime:.3f}%")
    t.add_row("incidents", str(len(rep.incidents)))
    t.add_row("minutes down", f"{rep.minutes_down:.1f}")
    t.add_row("longest incident", format_duration(rep.longest))
    t.add_row("mean time to detect (MTTD)", opt(rep.mttd))
    t.add_row("mean time to recover (MTTR)", opt(rep.mttr))
    t.add_row("revenue per minute", f"{rpm:,.2f} {currency}".strip())
    t.add_row("revenue at risk", f"{rep.revenue_at_risk:,.2f} {currency}".strip())
    out.print(t)
    if rep.incidents:
        it = Table(title="Incidents in the month")
        for col in ("id", "check", "started (UTC)", "duration", "detected in", "verdict"):
            it.add_column(col)
        now = time.time()
        for i in sorted(rep.incidents, key=lambda i: i.started_at):
            it.add_row(
                str(i.id),
                i.check,
                _when(i.started_at),
                format_duration(i.duration(now)),
                format_duration(i.time_to_detect),
                i.verdict or "-",
            )
        out.print(it)
    store.close()


@incidents_app.command("ack")
def ack_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    by: str = typer.Option(os.environ.get("USER", "cli"), "--by", help="Who takes it."),
    data: str | None = typer.Option(None, "--data", help="The monitor's data directory (to find it)."),
    monitor: str | None = typer.Option(None, "--monitor", help="The monitor's URL (default: from --data)."),
    token: str | None = typer.Option(None, "--token", envvar="SHIELDWALL_MONITOR_TOKEN", help="The API token."),
) -> None:
    """Acknowledge an incident: the running monitor stops escalating it."""
    import httpx

    from shieldwall.monitor._service import read_state

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    state = read_state(_data_dir(data)) or {}
    url = monitor or state.get("url")
    tok = token or state.get("token")
    if not url:
        err.print(
            f"error: the monitor is not running (no {_data_dir(data)}/monitor.json); "
            "start it with `shieldwall monitor`, or pass --monitor URL --token T"
        )
        raise typer.Exit(1)
    try:
        resp = httpx.post(
            f"{str(url).rstrip('/')}/api/incidents/{incident_id}/ack",
            json={"by": by},
            headers={"authorization": f"Bearer {tok}"} if tok else {},
            timeout=5.0,
        )
    except httpx.HTTPError as e:
        err.print(f"error: the monitor is not running or not reachable at {url} ({e}); nothing was acknowledged")
        raise typer.Exit(1) from None
    if resp.status_code != 200:
        try:
            msg = resp.json().get("error", resp.text)
        except ValueError:
            msg = resp.text
        err.print(f"error: the monitor said {resp.status_code}: {msg}")
        raise typer.Exit(1)
    inc = resp.json()["incident"]
    _console().print(
        f"incident #{inc['id']} ({inc['check']}) acknowledged by {inc['acked_by']}; escalation stopped"
    )


def register(app: typer.Typer) -> None:
    """Add this part's commands to ``app``."""
    app.command("monitor")(monitor_cmd)
    app.command("probe")(probe_cmd)
    app.add_typer(incidents_app, name="incidents")
