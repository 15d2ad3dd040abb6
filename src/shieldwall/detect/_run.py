"""``shieldwall analyze``'s body, and its plain command lines run without Typer.

Typer (0.29) builds a pydantic adapter for every parameter of the command it runs:
with pydantic's own import and its plugin look-up, and Click, that was about a
fifth of the analyzer's start-up, all of it before the parsing process was told how
to count. A plain command line -- log files that exist and the command's own options
with values that need no more checking than a float's (``--format``, ``--json``,
``--html``, ``--revenue-per-minute``, ``--config``), each at most once -- is read
here (:func:`plain_args`) and run directly; anything else (help, an unknown or
repeated option, a missing file, a value Typer would refuse) goes through Typer as
before, so every message about a bad command line is still Typer's. Both ways run
:func:`run`, the one body of the command; ``tests/detect/test_detect_analyze_cli.py``
holds the two to the same output. :func:`plain_args` is the only reader of the
command line before Typer: a plain line also starts its log's parsing process
before the command's imports (:func:`feed_for`), so nothing else needs to look.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from shieldwall.detect._feed import ColumnFeed

FORMATS = ("auto", "combined", "json")
"""Kept equal to ``readers.FORMATS`` (a test says so): this module is imported before it."""

_VALUED = ("--format", "--json", "--html", "--revenue-per-minute", "--config")


class Plain(NamedTuple):
    """A plain ``shieldwall analyze`` command line, read. (A named tuple, not a dataclass:
    ``dataclasses`` imports ``inspect``, and everything imported here is imported before
    the parsing process is forked, so it delays that process's whole run.)"""

    logs: list[Path]
    fmt: str = "auto"
    json_out: Path | None = None
    html_out: Path | None = None
    revenue_per_minute: float | None = None
    config: Path | None = None


def plain_args(args: Sequence[str]) -> Plain | None:
    """``args`` (after ``analyze``) read as Typer would read them, or None when they are
    not plain (then Typer reads them, and says what is wrong)."""
    logs: list[str] = []
    values: dict[str, str] = {}
    it = iter(args)
    for a in it:
        if a == "--":
            logs.extend(it)
            break
        if a.startswith("-") and a != "-":
            name, eq, value = a.partition("=")
            if name not in _VALUED or name in values:
                return None
            if not eq:
                nxt = next(it, None)
                if nxt is None or nxt.startswith("-"):
                    return None
                value = nxt
            if not value:
                return None
            values[name] = value
        else:
            logs.append(a)
    if not logs or any(not log or not Path(log).is_file() for log in logs):
        return None
    fmt = values.get("--format", "auto")
    if fmt not in FORMATS:
        return None
    revenue = None
    if "--revenue-per-minute" in values:
        try:
            revenue = float(values["--revenue-per-minute"])
        except ValueError:
            return None
        if not (math.isfinite(revenue) and revenue >= 0.0):
            return None

    def path(name: str) -> Path | None:
        v = values.get(name)
        return None if v is None else Path(v)

    return Plain([Path(log) for log in logs], fmt, path("--json"), path("--html"), revenue,
                 path("--config"))


def run_plain(p: Plain) -> int:
    """Run a plain command line; the exit status. Its parsing process starts first,
    before the detector's and the report's imports (:func:`feed_for`)."""
    return run(p.logs, p.fmt, p.json_out, p.html_out, p.revenue_per_minute, p.config,
               feed_for(p.logs, p.fmt))


def feed_for(logs: list[Path], fmt: str) -> ColumnFeed | None:
    """The parsing process for ``logs`` (one log, not JSON lines), started now: the
    caller starts it before its own imports, so the child's imports (numpy, Arrow) and
    first chunks overlap them."""
    if len(logs) != 1 or fmt == "json":
        return None
    from shieldwall.detect._feed import ColumnFeed

    return ColumnFeed(logs[0], fmt)


def run(logs: list[Path], fmt: str, json_out: Path | None, html_out: Path | None,
        revenue_per_minute: float | None, config: Path | None, feed: ColumnFeed | None) -> int:
    """The command: analyze, print the timeline and the incidents, write the files asked
    for; the exit status (2: the config was refused, and why is printed)."""
    try:
        return _run(logs, fmt, json_out, html_out, revenue_per_minute, config, feed)
    finally:
        if feed is not None:
            feed.close()


def _run(logs: list[Path], fmt: str, json_out: Path | None, html_out: Path | None,
         revenue_per_minute: float | None, config: Path | None, feed: ColumnFeed | None) -> int:
    from rich.console import Console

    from shieldwall.detect.analyze import analyze
    from shieldwall.detect.report import incident_details, render_html, timeline_table

    console = Console()
    settings = None
    if config is not None:
        from shieldwall.config import ConfigError, load_config

        try:
            settings = load_config(config).detect
        except ConfigError as exc:
            console.print(str(exc), markup=False, highlight=False)
            return 2
    report = analyze(logs, fmt, settings, feed=feed)
    console.print(timeline_table(report, revenue_per_minute))
    for line in incident_details(report):
        console.print(line, markup=False, highlight=False)
    if report.stats.unparsed:
        console.print(f"[yellow]{report.stats.unparsed:,} line(s) could not be parsed; first ones:[/]")
        for s in report.stats.samples:
            console.print(f"  {s}", markup=False, highlight=False)
    if not report.incidents:
        console.print("no incident: traffic looked normal throughout")
    if json_out is not None:
        import json

        json_out.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    if html_out is not None:
        title = "shieldwall analyze: " + ", ".join(p.name for p in logs)
        html_out.write_text(render_html(report, title, revenue_per_minute), encoding="utf-8")
    return 0


def main(args: Sequence[str]) -> None:
    """``shieldwall analyze ARGS`` when they are plain (exits), else return (Typer's turn)."""
    p = plain_args(args)
    if p is None:
        return
    import atexit

    # Only as the first exit handler, so that it runs last: after every other one, and
    # after whatever a caller that catches the SystemExit still does. (A handler
    # registered before the command ran, by a program that runs it in process, would be
    # skipped: then the process ends as usual.)
    if not atexit._ncallbacks():  # type: ignore[attr-defined]
        atexit.register(_quick_exit)
    try:
        code = run_plain(p)
    except KeyboardInterrupt:
        # as Click ends a command interrupted
        print("\nAborted!", file=sys.stderr)
        code = 1
    global _exit_code
    _exit_code = code
    sys.exit(code)


_exit_code: int | None = None


def _quick_exit() -> None:
    """End the process without the interpreter's teardown, once the command is done.

    Its output is written and its files closed; what is left is freeing every object
    and module one by one (and a last collection): 0.02-0.04 CPU s of the command's
    own process on the 650,000-line log, after its last line, for nothing. Flushed
    first; exits with the command's status."""
    if _exit_code is None:
        return  # the command did not end (an error is on its way out): the usual exit
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_exit_code)
