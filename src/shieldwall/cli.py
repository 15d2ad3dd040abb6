"""The one entry point. Each part registers its own commands, so this file
stays a table of contents: the CLI is a thin client of the parts (and, for
running shields, of the admin API), never a second implementation.

A command imports only its own part: ``shieldwall analyze`` has no use for the
drill, the monitor or the proxy's HTTP client, and importing every part's
commands cost half a second of CPU before the first log line was read. So
:func:`main` looks at the command named on the command line (:data:`COMMANDS`
says whose it is) and registers that part alone; the root's help, a mistyped
command and ``from shieldwall.cli import app`` (the tests) get every part.

Typer itself is imported only once :func:`main` has looked at the command line:
a plain ``analyze`` command line (:mod:`shieldwall.detect._run`) runs without Typer
at all (Typer 0.29 builds a pydantic adapter per parameter: a fifth of the
analyzer's start-up), and starts the log's parsing process before its own imports,
so that process's start-up runs beside them instead of after them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shieldwall import __version__

if TYPE_CHECKING:
    import typer

PARTS = ("proxy", "guard", "detect", "monitor", "drill")
"""The parts with commands, in the order of the root's help."""

COMMANDS = {
    "check-config": "proxy", "serve": "proxy",
    "status": "guard", "mode": "guard", "ban": "guard", "unban": "guard", "bans": "guard",
    "allow": "guard", "unallow": "guard",
    "analyze": "detect",
    "monitor": "monitor", "probe": "monitor", "incidents": "monitor",
    "drill": "drill", "demo": "drill",
}
"""Command -> the part that registers it (tests/test_cli.py holds it to what they register)."""


def _version(value: bool) -> None:
    if value:
        import typer

        from shieldwall import _build

        typer.echo(f"shieldwall {__version__} ({_build.describe()})")
        raise typer.Exit()


def make_app(parts: Sequence[str] = PARTS) -> typer.Typer:
    """The root app with the commands of ``parts`` (each part's ``_cli.register``)."""
    import typer

    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """shieldwall: serve, check-config, ban/unban/status/mode, analyze, monitor, drill, demo."""

    root = typer.Typer(
        name="shieldwall",
        help="Keep a shop selling through a flood, a flash crowd or a dead server.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Click's own help layout: Typer's Rich panels (0.29) print every flag as
        # taking a value (`--version <bool>`, `--help <bool>`).
        rich_markup_mode=None,
    )
    root.callback()(_root)
    for part in parts:
        importlib.import_module(f"shieldwall.{part}._cli").register(root)
    return root


def parts_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The parts a command line needs: the named command's part, or all of them (no
    command, the root's help, or a name no part registers: Click lists them all)."""
    for arg in argv:
        if not arg.startswith("-"):
            part = COMMANDS.get(arg)
            return (part,) if part is not None else PARTS
    return PARTS


_full: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    """``app``: every part's commands, built on first use (tests, ``typer`` tooling)."""
    global _full
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _full is None:
        _full = make_app()
    return _full


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["analyze"]:
        from shieldwall.detect import _run

        _run.main(argv[1:])  # a plain command line runs (and exits) without Typer
    make_app(parts_for(argv))()


if __name__ == "__main__":
    main()
