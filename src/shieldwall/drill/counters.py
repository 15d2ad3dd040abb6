"""Request counters that survive a SIGKILL.

Each shop process counts requests by true client in a small memory-mapped
file of its own. The kernel keeps the mapped pages when the process is
killed, so a drill that kills a backend mid-flood still knows how many
attack requests that backend served before it died. Single writer per file
(one asyncio loop), any number of readers.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

SLOTS = ("shopper", "attacker", "other", "checkout_attempts", "checkout_replays", "probe")
"""``probe``: ``GET /healthz`` from neither a shopper nor an attacker (the
shields' own health checks) and the cluster drill's ban probe, kept apart so that ``other`` counts only real
requests the shop could not tie to a client: a shopper seen as the balancer."""
_FMT = "<" + "q" * len(SLOTS)
SIZE = struct.calcsize(_FMT)


class CounterFile:
    """The writer side: one per shop process."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, SIZE)
            self._mm = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)

    def add(self, slot: str, n: int = 1) -> None:
        off = SLOTS.index(slot) * 8
        (value,) = struct.unpack_from("<q", self._mm, off)
        struct.pack_into("<q", self._mm, off, value + n)

    def close(self) -> None:
        self._mm.close()


def read(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    if len(data) < SIZE:
        return dict.fromkeys(SLOTS, 0)
    return dict(zip(SLOTS, struct.unpack(_FMT, data[:SIZE]), strict=True))


def read_all(directory: Path) -> dict[str, int]:
    """Sum of every counter file in ``directory`` (all backends, all incarnations)."""
    total = dict.fromkeys(SLOTS, 0)
    for path in sorted(directory.glob("counters-*.bin")):
        for key, value in read(path).items():
            total[key] += value
    return total
