"""The guard's explicit state: mode, block and allow lists, suspects and token
buckets, all in process memory so the request path never waits on anything.

:class:`LocalState` is the store the gate reads and writes. It is complete on
its own (one shield process); for many processes, :mod:`._redis` pushes its
changes to Redis and pulls the others' in batches. Every list change bumps
``version`` (so the gate's per-address caches go stale) and is queued in
``outbox`` for the Redis sync; bucket spending is queued in ``pending``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shieldwall.guard._net import CidrMap, parse_network
from shieldwall.guard.decision import Mode


@dataclass(frozen=True, slots=True)
class ListEntry:
    until: float
    """Unix time the entry expires (math.inf: never)."""
    reason: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Op:
    """A change to shared state, to be replayed on Redis."""

    kind: str
    """"ban", "unban", "allow", "unallow", "mode"."""
    value: str = ""
    entry: ListEntry | None = None


SEVERITY = [Mode.NORMAL, Mode.ELEVATED, Mode.UNDER_ATTACK]


class Bucket:
    """A token bucket's level as of ``stamp``. Native floats (compiled): a
    list of three floats boxed a new float at every write, three per bucket
    per request."""

    __slots__ = ("refill", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float, refill: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.refill = refill
        """Seconds the bucket takes to refill from empty (the sweep's test)."""


class LocalState:
    def __init__(self, initial_mode: Mode | None = None) -> None:
        self.version = 0
        self.detector_mode = Mode.NORMAL
        """The detector's mode in force (with Redis: the most severe of all processes')."""
        self.own_detector_mode = Mode.NORMAL
        """What this process's own detector said last."""
        self.peer_detector_mode = Mode.NORMAL
        """The most severe recent verdict of the other processes' detectors (Redis)."""
        self.pinned: Mode | None = initial_mode
        self.static_block: CidrMap[ListEntry] = CidrMap()
        self.static_allow: CidrMap[ListEntry] = CidrMap()
        self.bans: CidrMap[ListEntry] = CidrMap()
        self.allows: CidrMap[ListEntry] = CidrMap()
        self.suspects: dict[str, tuple[float, float]] = {}
        """address -> (score, until). Written only by :meth:`mark_suspect`
        (and emptied of the expired by the sweep)."""
        self.suspects_gen = 0
        """Bumped by every :meth:`mark_suspect`: only that makes an address a
        suspect, so a caller that found it none at this count may take it as
        none again until it moves (the gate's per-address memo)."""
        self.buckets: dict[str, Bucket] = {}
        self.bucket_gen = 0
        """Bumped when buckets go (the sweep): the gate's references to
        buckets are then stale (GuardGate._take). (The Redis sync sets levels
        in place.)"""
        self.strikes: dict[str, Bucket] = {}
        """address -> a bucket of its limit hits, as ``buckets`` (local: never synced)."""
        self.pending: dict[str, list[float]] | None = None
        """key -> [spent, rate, burst] since the last Redis sync (None: no Redis)."""
        self.outbox: list[Op] = []
        self.record_ops = False
        self.listeners: list[Callable[[str, str, ListEntry | None], None]] = []
        """Called with ("ban"|"unban", network, entry) (the nftables set listens)."""

    # -- mode --------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self.pinned if self.pinned is not None else self.detector_mode

    def set_mode(self, mode: Mode | None, source: str, *, remote: bool = False) -> bool:
        """Apply a mode change; returns False when it was ignored (the detector
        cannot override an operator's pin). ``mode=None`` from an operator unpins."""
        if source == "detector":
            if mode is None:
                return False
            if not remote:
                changed = mode is not self.own_detector_mode
                self.own_detector_mode = mode
            else:
                changed = False
                self.peer_detector_mode = mode
            self.detector_mode = max(self.own_detector_mode, self.peer_detector_mode,
                                     key=SEVERITY.index)
        else:
            changed = mode is not self.pinned
            self.pinned = mode
        if changed and self.record_ops and not remote:
            self.outbox.append(Op("mode", f"{source}:{mode.value if mode else 'auto'}"))
        return self.pinned is None or source != "detector"

    # -- lists -------------------------------------------------------------

    def _notify(self, kind: str, key: str, entry: ListEntry | None) -> None:
        for fn in self.listeners:
            fn(kind, key, entry)

    def ban(self, value: str, entry: ListEntry, *, remote: bool = False) -> str:
        key = self.bans.put(value, entry)
        self.version += 1
        if self.record_ops and not remote:
            self.outbox.append(Op("ban", key, entry))
        self._notify("ban", key, entry)
        return key

    def unban(self, value: str, *, remote: bool = False) -> bool:
        key = str(parse_network(value))
        found = self.bans.remove(key)
        self.version += 1
        if self.record_ops and not remote:
            self.outbox.append(Op("unban", key))
        if found:
            self._notify("unban", key, None)
        return found

    def allow(self, value: str, entry: ListEntry, *, remote: bool = False) -> str:
        key = self.allows.put(value, entry)
        self.version += 1
        if self.record_ops and not remote:
            self.outbox.append(Op("allow", key, entry))
        return key

    def unallow(self, value: str, *, remote: bool = False) -> bool:
        key = str(parse_network(value))
        found = self.allows.remove(key)
        self.version += 1
        if self.record_ops and not remote:
            self.outbox.append(Op("unallow", key))
        return found

    def replace_lists(self, bans: dict[str, ListEntry], allows: dict[str, ListEntry]) -> None:
        """Make the run-time lists equal to a snapshot (from Redis)."""
        for key, _ in self.bans.items():
            if key not in bans:
                self.unban(key, remote=True)
        for key, entry in bans.items():
            if self.bans.get_exact(key) != entry:
                self.ban(key, entry, remote=True)
        for key, _ in self.allows.items():
            if key not in allows:
                self.unallow(key, remote=True)
        for key, entry in allows.items():
            if self.allows.get_exact(key) != entry:
                self.allow(key, entry, remote=True)

    # -- suspects ----------------------------------------------------------

    def mark_suspect(self, address: str, score: float, until: float) -> None:
        self.suspects_gen += 1
        old = self.suspects.get(address)
        if old is None or old[0] <= score or old[1] < until:
            self.suspects[address] = (max(score, old[0]) if old else score,
                                      max(until, old[1]) if old else until)

    # -- upkeep ------------------------------------------------------------

    def sweep(self, now: float, buckets: bool = True) -> int:
        """Drop what has expired; returns how many entries went."""
        gone = 0
        for key, entry in self.bans.items():
            if entry.until <= now:
                self.unban(key, remote=True)
                gone += 1
        for key, entry in self.allows.items():
            if entry.until <= now:
                self.unallow(key, remote=True)
                gone += 1
        dead = [a for a, (_, until) in self.suspects.items() if until <= now]
        for a in dead:
            del self.suspects[a]
        gone += len(dead)
        if not buckets:
            return gone
        # a bucket left alone longer than it takes to refill is full: the same
        # as no bucket, so it goes (memory stays bounded by recent clients)
        stale = [k for k, b in self.buckets.items() if now - b.stamp > b.refill]
        for k in stale:
            del self.buckets[k]
        if stale:
            self.bucket_gen += 1
        idle = [k for k, b in self.strikes.items() if now - b.stamp > b.refill]
        for k in idle:
            del self.strikes[k]
        return gone + len(stale) + len(idle)

