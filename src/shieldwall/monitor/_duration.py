"""Durations as people write them in config and on the command line.

"30s", "2m", "1h", "1h30m", "250ms" or a bare number of seconds. One parser so
that `--every 30s` and `interval = "30s"` can never disagree.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
ACCEPTED = 'a duration like "250ms", "30s", "2m", "1h", "1h30m" or a number of seconds'


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``; raises ValueError naming what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"expected {ACCEPTED}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected {ACCEPTED} (not negative), got {value!r}")
        return float(value)
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError(f"expected {ACCEPTED}, got an empty string")
    try:
        seconds = float(text)
    except ValueError:
        pos = 0
        seconds = 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or pos == 0:
            raise ValueError(f"expected {ACCEPTED}, got {value!r}") from None
    if seconds < 0:
        raise ValueError(f"expected {ACCEPTED} (not negative), got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: "45s", "3m 20s", "2h 05m"."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"
