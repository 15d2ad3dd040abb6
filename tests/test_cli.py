"""The root command: version and help."""

from __future__ import annotations

import subprocess
import sys

from shieldwall import __version__


def test_version_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shieldwall.cli", "--version"], capture_output=True, text=True, check=True
    )
    # and which build runs: "(compiled (mypyc): ...)" or "(pure Python ...)"
    assert out.stdout.startswith(f"shieldwall {__version__} (")


def _command_paths() -> list[list[str]]:
    import typer.main

    from shieldwall.cli import app

    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


def test_help_shows_flags_as_flags_on_every_command() -> None:
    """`--version` and `--help` take no value, so no `<bool>` after them."""
    from typer.testing import CliRunner

    from shieldwall.cli import app

    root = CliRunner().invoke(app, ["--help"])
    assert root.exit_code == 0
    [line] = [ln for ln in root.output.splitlines() if "--version" in ln]
    assert line.split() == ["--version", "Print", "the", "version", "and", "exit."]
    paths = _command_paths()
    assert len(paths) > 10
    for path in paths:
        r = CliRunner().invoke(app, [*path, "--help"])
        assert r.exit_code == 0, path
        assert "<bool>" not in r.output, (path, r.output)


def test_the_command_table_names_what_each_part_registers() -> None:
    """`main` registers only the named command's part: the table must say whose each
    command is, exactly (a command missing from it would still run, with every part
    imported; one listed under the wrong part would not be found)."""
    import typer.main

    from shieldwall.cli import COMMANDS, PARTS, make_app, parts_for

    for part in PARTS:
        names = set(typer.main.get_command(make_app([part])).commands)  # type: ignore[attr-defined]
        assert names == {c for c, p in COMMANDS.items() if p == part}, part
    assert parts_for(["analyze", "x.log", "--json", "out"]) == ("detect",)
    assert parts_for(["--help"]) == PARTS
    assert parts_for(["analyse"]) == PARTS
    assert parts_for([]) == PARTS


def test_analyze_imports_only_its_own_part() -> None:
    """`shieldwall analyze`'s start-up: the drill, the monitor and the proxy stay unimported."""
    code = ("import sys; from shieldwall.cli import make_app, parts_for; "
            "make_app(parts_for(['analyze'])); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('shieldwall.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = out.stdout.split()
    assert "shieldwall.detect._cli" in mods
    for other in ("shieldwall.drill", "shieldwall.monitor", "shieldwall.proxy", "shieldwall.guard._cli"):
        assert other not in mods, (other, mods)
