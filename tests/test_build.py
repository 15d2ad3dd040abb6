"""Which build runs: the hot path compiled by the install when it can be, the
pure modules on demand (SHIELDWALL_PURE=1), and `--version` says which."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from shieldwall import _build


def _run(code: str, **env: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, **env}).stdout.strip()


WHICH = ("import importlib, shieldwall._build as b; "
         "print(' '.join(importlib.import_module(m).__file__.rsplit('.', 1)[1] for m in b.HOT))")


@pytest.mark.skipif(shutil.which("gcc") is None or not Path(
    sysconfig.get_paths()["include"], "Python.h").exists(), reason="no C compiler here")
def test_with_a_c_compiler_the_install_compiled_the_whole_hot_path() -> None:
    if os.environ.get(_build.PURE_ENV):
        pytest.skip("this run asked for the pure modules")
    assert _build.is_compiled(), f"{_build.describe()}: run `make build`"
    assert set(_run(WHICH).split()) == {"so"}


def test_shieldwall_pure_imports_every_hot_module_from_its_source() -> None:
    assert set(_run(WHICH, SHIELDWALL_PURE="1").split()) == {"py"}


def test_version_says_which_build_runs() -> None:
    cmd = [sys.executable, "-m", "shieldwall.cli", "--version"]
    pure = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "SHIELDWALL_PURE": "1"}).stdout
    assert "pure Python (SHIELDWALL_PURE=1)" in pure
    default = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items()
                                  if k != "SHIELDWALL_PURE"}).stdout
    assert "(compiled (mypyc): " in default or "(pure Python (" in default
