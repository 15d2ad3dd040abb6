"""The root command: version and help."""

from __future__ import annotations

import subprocess
import sys

from shieldwall import __version__


def test_version_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shieldwall.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"shieldwall {__version__}"
