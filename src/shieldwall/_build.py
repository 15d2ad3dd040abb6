"""Which build of the hot path runs: compiled (mypyc) or pure Python.

The modules in :data:`HOT` are compiled by ``setup.py`` with mypyc from the
same typed source when the machine has a C compiler; each compiled module is
an extension next to its ``.py`` and Python imports the extension first. The
pure modules stay importable, and this module decides which one runs:

- ``SHIELDWALL_PURE=1`` in the environment: the ``.py`` files (a quick way to
  compare, and what the tests' pure subset uses);
- an editable install (the Makefile's ``make venv``) whose compiled build is
  older than one of the hot sources: the ``.py`` files, with one line on
  stderr saying so, so a developer's edit is never silently ignored
  (``make venv`` or ``make build`` recompiles);
- otherwise the compiled modules when present.

All or nothing: compiled modules call each other directly (not through
Python imports), so mixing a compiled module with the pure version of another
would run two copies of a class. This module is never compiled itself.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import importlib.abc

HOT: tuple[str, ...] = (
    "shieldwall.http.framing",
    "shieldwall.proxy.server",
    "shieldwall.proxy.upstream",
    "shieldwall.proxy.balancer",
    "shieldwall.proxy.accesslog",
    "shieldwall.proxy.cache",
    "shieldwall.metrics",
    "shieldwall.guard.decision",
    "shieldwall.guard._gate",
    "shieldwall.guard._standing",
    "shieldwall.guard._admission",
    "shieldwall.guard._state",
    "shieldwall.guard._net",
    "shieldwall.guard._tokens",
    "shieldwall.guard._responses",
    "shieldwall.detect.windows",
    "shieldwall.rowfeed",
)
"""The request path's modules, compiled together (setup.py reads this tuple)."""

PURE_ENV = "SHIELDWALL_PURE"
_ROOT = Path(__file__).resolve().parent
_HOT_SET = frozenset(HOT)

reason = ""
"""Why the pure modules run although compiled ones may exist ("" when not forced)."""


def _source(name: str) -> Path:
    return _ROOT.joinpath(*name.split(".")[1:]).with_suffix(".py")


def _compiled_file(name: str) -> Path | None:
    stem = str(_source(name))[:-3]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = Path(stem + suffix)
        if p.exists():
            return p
    return None


def _stale() -> str:
    """In a source checkout: the first hot source edited after its compiled
    module was built ("" when none, or when installed from a wheel)."""
    if "site-packages" in _ROOT.parts or "dist-packages" in _ROOT.parts:
        return ""
    for name in HOT:
        so = _compiled_file(name)
        if so is not None and _source(name).stat().st_mtime > so.stat().st_mtime:
            return str(_source(name).relative_to(_ROOT.parent))
    return ""


def _pure_finder() -> importlib.abc.MetaPathFinder:
    """A finder of the hot modules as source files, skipping their extensions. (Made
    when needed: ``importlib.abc`` imports ``importlib.resources`` and with it tempfile,
    shutil, random, bz2 and lzma, a sixth of ``shieldwall analyze``'s start-up before it
    forks its parsing process, in every command that runs the compiled build.)"""
    import importlib.abc

    class _PureFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Sequence[str] | None,
                      target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
            if fullname not in _HOT_SET:
                return None
            src = _source(fullname)
            return importlib.util.spec_from_file_location(
                fullname, src, loader=importlib.machinery.SourceFileLoader(fullname, str(src)))

    return _PureFinder()


def install() -> None:
    """Called once by ``shieldwall/__init__.py``, before any hot module loads."""
    global reason
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        reason = f"{PURE_ENV}={os.environ[PURE_ENV]}"
    else:
        stale = _stale()
        if not stale:
            return
        reason = f"{stale} changed after the compiled build"
        print(f"shieldwall: {reason}: running the pure-Python hot path "
              "(`make build` recompiles it)", file=sys.stderr)
    sys.meta_path.insert(0, _pure_finder())


def describe() -> str:
    """One line for ``shieldwall --version``: which build is running."""
    import importlib

    compiled = 0
    for name in HOT:
        mod = importlib.import_module(name)
        if not (getattr(mod, "__file__", "") or "").endswith(".py"):
            compiled += 1
    if compiled == len(HOT):
        return f"compiled (mypyc): {compiled} hot-path modules"
    if compiled:
        return f"partly compiled: {compiled} of {len(HOT)} hot-path modules"
    if reason:
        return f"pure Python ({reason})"
    return "pure Python (the hot path was not compiled: no C compiler at install?)"


def is_compiled() -> bool:
    return describe().startswith("compiled")


def main() -> None:
    """Called by the Makefile's venv step: one line
    saying which build was installed; a WARNING when the hot path is pure."""
    line = describe()
    if line.startswith("compiled"):
        print(f"shieldwall: {line}")
    else:
        print(f"WARNING: shieldwall runs the {line}; it works, at about 1.3x the CPU "
              "per request. With gcc and the Python headers (Debian: gcc python3-dev), "
              "`make build` compiles it.", file=sys.stderr)

