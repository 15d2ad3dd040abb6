"""The incident timeline: mode changes, verdicts, bans and who did what.

Entries come from two places: the admin listener records every change an
operator made through it (who, from where, what, the answer), and the
console's once-a-second sampler records what it saw change (the mode, the
detector's verdict, bans appearing or going, whoever made them: the
detector, a peer worker, Redis). Kept in memory for ``KEEP_SECONDS``, at
most ``MAX_ENTRIES``; exported as JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

KEEP_SECONDS = 24 * 3600.0
MAX_ENTRIES = 20000


@dataclass(frozen=True, slots=True)
class Entry:
    at: float
    kind: str
    """"mode", "verdict", "ban", "unban", "action" (an operator's change)."""
    text: str
    who: str = ""
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["iso"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return d


class Timeline:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.entries: deque[Entry] = deque(maxlen=MAX_ENTRIES)

    def add(self, kind: str, text: str, who: str = "", detail: str = "") -> Entry:
        e = Entry(self.clock(), kind, text, who, detail)
        self.entries.append(e)
        horizon = e.at - KEEP_SECONDS
        while self.entries and self.entries[0].at < horizon:
            self.entries.popleft()
        return e

    def since(self, seconds: float) -> list[Entry]:
        horizon = self.clock() - seconds
        return [e for e in self.entries if e.at >= horizon]

    def last(self, n: int, kind: str | None = None) -> list[Entry]:
        out: list[Entry] = []
        for e in reversed(self.entries):
            if kind is None or e.kind == kind:
                out.append(e)
                if len(out) >= n:
                    break
        return out

    @staticmethod
    def to_csv(entries: list[Entry]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["time_utc", "unix", "kind", "text", "who", "detail"])
        for e in entries:
            w.writerow([e.as_json()["iso"], f"{e.at:.3f}", e.kind, e.text, e.who, e.detail])
        return buf.getvalue()
