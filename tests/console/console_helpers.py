"""What the console's listener and browser tests share: how a shield under
test is configured and how its banner names its ports."""

from __future__ import annotations

import re
from pathlib import Path

BANNER = re.compile(r"listening on http://127\.0\.0\.1:(\d+) admin http://127\.0\.0\.1:(\d+)")


def quiet_config(directory: Path, extra: str = "") -> Path:
    """No access log: it goes to stdout by default, and a pipe nobody reads
    fills up and stalls the shield. ``extra``: more TOML, appended."""
    path = directory / "shield.toml"
    path.write_text('access_log = "off"\n[[backends]]\nurl = "http://127.0.0.1:9"\n' + extra)
    return path
