"""The `drill` part's commands, registered on the root CLI app:
``shieldwall drill SCENARIO`` and ``shieldwall demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import uvloop
from rich.console import Console, Group
from rich.live import Live as RichLive
from rich.table import Table
from rich.text import Text

from shieldwall.drill.fronts import AGAINST, nginx_binary
from shieldwall.drill.report import headline, print_summary, schema_errors, write_all
from shieldwall.drill.runner import DrillOptions, Live, run_drill
from shieldwall.drill.scenarios import SCENARIOS


def _console() -> Console:
    c = Console()
    return c if c.is_terminal else Console(width=120)


def _progress(live: Live, events_from: int | None = None) -> Group:
    """The status line and events. On a terminal the last four events under a line that
    redraws; in a log (``events_from``) only the events since the previous print, so a
    piped run reads as a timeline, each event once."""
    legit, attack = live.legit, live.attack
    s = live.samples[-1] if live.samples else None
    i = int(live.t) - 1
    lr = legit.requests.at(i) if legit else 0
    lo = legit.good.at(i) if legit else 0
    ar = attack.sent.at(i) if attack else 0
    t = Table.grid(padding=(0, 2))
    clock = (f"{live.t:5.1f}/{live.duration:.0f}s" if live.t <= live.duration
             else f"{live.duration:.0f}s + letting sessions finish")
    t.add_row(Text(clock, style="bold"), f"phase [bold]{live.phase}[/]",
              f"shoppers {lo}/{lr} ok/s", f"attack {ar}/s",
              f"mode {s.mode if s and s.mode else '-'}", f"verdict {s.verdict if s and s.verdict else '-'}",
              f"backends up {sum(s.alive) if s else '-'}")
    events = live.events[-4:] if events_from is None else live.events[events_from:]
    return Group(t, Text("\n".join(events), style="dim"))


def run_and_report(opts: DrillOptions, json_path: Path, html_path: Path | None, console: Console) -> dict[str, Any]:
    try:
        return _run_and_report(opts, json_path, html_path, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every process the lab started has been stopped; no report.[/]")
        raise typer.Exit(130) from None


def _run_and_report(opts: DrillOptions, json_path: Path, html_path: Path | None, console: Console) -> dict[str, Any]:
    live = Live()
    if console.is_terminal:
        with RichLive(_progress(live), console=console, refresh_per_second=4, transient=False) as rl:
            report = uvloop.run(run_drill(opts, live, lambda lv: rl.update(_progress(lv))))
    else:
        printed = 0

        def tick(lv: Live) -> None:
            nonlocal printed
            printed = min(printed, len(lv.events))  # a new run starts its events afresh
            if lv.samples and lv.samples[-1].t % 5 == 0:
                console.print(_progress(lv, printed))
                printed = len(lv.events)

        report = uvloop.run(run_drill(opts, live, tick))
    errs = schema_errors(report)
    if errs:
        console.print(f"[red]report does not match the schema: {errs}[/]")
    paths = write_all(report, json_path, html_path)
    if report.get("access_log"):
        paths["access_log"] = Path(str(report["access_log"]))
    print_summary(report, console, paths)
    return report


def register(app: typer.Typer) -> None:
    """Add this part's commands to ``app``."""

    @app.command()
    def drill(
        scenario: str = typer.Argument(..., help=f"one of: {', '.join(SCENARIOS)}"),
        against: str = typer.Option("none", "--against", help="shieldwall | none | nginx"),
        duration: float = typer.Option(60.0, "--duration", min=3.0, max=600.0, help="seconds"),
        json_path: Path = typer.Option(None, "--json", help="report path (default OUT/report.json)"),
        html_path: Path = typer.Option(None, "--html", help="timeline chart (default OUT/timeline.html)"),
        out: Path = typer.Option(Path("out/drill"), "--out", help="directory for logs and outputs"),
        rate: float = typer.Option(2.0, "--rate", min=0.1, max=100.0, help="shopper sessions per second"),
        backends: int = typer.Option(2, "--backends", min=1, max=8),
        sources: int = typer.Option(None, "--sources", min=1, max=20000, help="attacker addresses"),
        seed: int = typer.Option(None, "--seed"),
        shield_mode: str = typer.Option(None, "--shield-mode",
                                        help="shieldwall only: pin the mode (normal|elevated|under_attack)"),
        shield_toml: Path = typer.Option(None, "--shield-toml", exists=True, dir_okay=False,
                                         help="shieldwall only: TOML appended to the lab's shield config "
                                              "(e.g. a [guard.admission] section)"),
        nodes: int = typer.Option(1, "--nodes", min=1, max=5,
                                  help="shieldwall only: N shield nodes behind HAProxy (send-proxy-v2) "
                                       "sharing Redis with a Sentinel"),
    ) -> None:
        """Run a drill: the demo shop, shoppers, attacks and faults; then the report."""
        console = _console()
        if scenario not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}",
                                     param_hint="SCENARIO")
        if against not in AGAINST:
            raise typer.BadParameter(f"{against!r}; choose one of {', '.join(AGAINST)}", param_hint="--against")
        if against == "nginx":
            try:
                nginx_binary()
            except RuntimeError as exc:
                raise typer.BadParameter(str(exc), param_hint="--against") from exc
        if shield_mode is not None and (against != "shieldwall" or
                                        shield_mode not in ("normal", "elevated", "under_attack")):
            raise typer.BadParameter("needs --against shieldwall and one of normal, elevated, under_attack",
                                     param_hint="--shield-mode")
        if nodes > 1:
            if against != "shieldwall":
                raise typer.BadParameter("needs --against shieldwall", param_hint="--nodes")
            from shieldwall.drill.cluster_front import haproxy_binary

            try:
                haproxy_binary()
            except RuntimeError as exc:
                raise typer.BadParameter(str(exc), param_hint="--nodes") from exc
        if shield_toml is not None and against != "shieldwall":
            raise typer.BadParameter("needs --against shieldwall", param_hint="--shield-toml")
        opts = DrillOptions(scenario, against, duration, rate, out, backends, attack_sources=sources, seed=seed,
                            shield_mode=shield_mode,
                            shield_toml=shield_toml.read_text() if shield_toml is not None else "",
                            nodes=nodes)
        run_and_report(opts, json_path or out / "report.json", html_path or out / "timeline.html", console)

    @app.command()
    def demo(
        out: Path = typer.Option(Path("out/demo"), "--out", help="where the report and picture go"),
        duration: float = typer.Option(90.0, "--duration", min=10.0, max=300.0),
        against: str = typer.Option("shieldwall", "--against", help="shieldwall | none"),
    ) -> None:
        """The demonstration: normal shopping, a 10x flash crowd, a randomized flood
        from a thousand addresses, a backend killed mid-flood, and recovery."""
        console = _console()
        console.print(
            "[bold]shieldwall demo[/]: a demo shop on two backends behind "
            f"[bold]{against}[/], shoppers from 127.10.0.0/16, attackers from 127.64.0.0/10 (loopback only).\n"
            "Phases: calm shopping -> 10x flash crowd -> randomized flood (20x the shoppers' rate, "
            "1,000 addresses) -> a backend killed mid-flood -> recovery.\n")
        opts = DrillOptions("mixed", against, duration, 2.0, out, 2)
        report = run_and_report(opts, out / "report.json", out / "timeline.html", console)
        console.print("\n[bold]What happened[/]")
        for line in headline(report):
            console.print(f"  - {line}")
        if against == "shieldwall" and all(p.get("verdict") is None for p in report["phases"]):
            console.print("  [yellow]The shield's detector verdict was not available from its admin API "
                          "(GET /api/verdict): verdicts are shown as '-'.[/]")
        console.print(f"\n[bold]The picture:[/] {(out / 'timeline.html').resolve()}")
        if against == "shieldwall":
            console.print("The same drill without a shield: [bold]shieldwall demo --against none[/]; "
                          "side by side with nginx: [bold].venv/bin/python bench/drill.py[/]")
