"""The guard as the shield runs it: the pure gate and admission plus the
background work they need (Redis batch sync, expiry sweeps, the nftables set)
and the admin routes. The proxy wires it in::

    guard = GuardRuntime.from_settings(config.guard)
    await guard.start()
    ... gate=guard.gate, admission=guard.admission, admin_routes += guard.admin_routes
    await guard.stop()
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shieldwall.admin_api import AdminRoute
from shieldwall.guard._admission import PriorityAdmission
from shieldwall.guard._crawlers import crawler_networks
from shieldwall.guard._gate import GuardGate
from shieldwall.guard._net import parse_network
from shieldwall.guard._state import SEVERITY, ListEntry, LocalState
from shieldwall.guard.decision import Mode
from shieldwall.guard.settings import GuardSettings

log = logging.getLogger("shieldwall.guard")

SWEEP_INTERVAL = 1.0
BUCKET_SWEEP_EVERY = 10
"""Buckets are many under a flood: walk them every 10 sweeps, lists every sweep."""
PEER_FRESH = 30.0
"""Seconds a peer worker's detector verdict counts (as DETECTOR_FRESH with Redis)."""
PEER_REPORT_EVERY = 5.0
"""Seconds between reports of an unchanged verdict to the peers (Redis: FULL_RELOAD_EVERY)."""
MAX_PEER_NODES = 1000
"""Peer workers (a restarted one is a new node) whose counters are kept at most."""
MAX_PEER_SUSPECTS = 10_000
"""Suspects sent to (or taken from) the peers per report at most (under 1 MB even
for IPv6: the admin listener's body cap; the detector names at most 2,000 a second)."""


class GuardRuntime:
    def __init__(self, settings: GuardSettings, state: LocalState, gate: GuardGate,
                 admission: PriorityAdmission, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.state = state
        self.gate = gate
        self.admission = admission
        self.clock = clock
        self.allow_source = ""
        self._tasks: list[asyncio.Task[None]] = []
        self.task_failures = 0
        self._sync: Any = None
        self._nft: Any = None
        self.node = secrets.token_hex(4)
        """This process's name among its peer workers (a restarted one gets a new one)."""
        self._peer_verdicts: dict[str, tuple[Mode, float]] = {}
        self._reported: tuple[Mode, float] | None = None
        self._peer_counts: dict[str, dict[str, int]] = {}
        """The gate counters each peer worker (live or gone) reported last, so
        /metrics counts the whole shield and never goes down when one dies."""
        self._counts_sent: dict[str, int] | None = None
        self._suspects_out: list[tuple[str, float, float]] | None = None
        self._mode_seen: tuple[Mode, float, str] | None = (state.mode, clock(), "start")
        """(mode in force, since when, by whom): see _note_mode."""
        """Suspects this worker's detector named since the last peer report
        (None until the first report: no peers, nothing kept)."""
        from shieldwall.guard._admin import admin_routes, peer_routes
        self.admin_routes: list[AdminRoute] = admin_routes(self)
        self.peer_routes: list[AdminRoute] = peer_routes(self)
        """Worker-to-worker routes (private unix sockets, see shieldwall.proxy.fanout)."""

    @classmethod
    def from_settings(cls, settings: GuardSettings, *,
                      clock: Callable[[], float] = time.time) -> GuardRuntime:
        pinned = None if settings.mode == "auto" else Mode(settings.mode)
        state = LocalState(pinned)
        for net in settings.block:
            state.static_block.put(net, ListEntry(math.inf, "config", "config"))
        for net in settings.allow:
            state.static_allow.put(net, ListEntry(math.inf, "config", "config"))
        source = "config only"
        if settings.allow_crawlers:
            nets, source = crawler_networks()
            for net in nets:
                try:
                    state.static_allow.put(net, ListEntry(math.inf, "crawler", "crawler"))
                except ValueError:
                    continue
        gate = GuardGate(settings, state, clock)
        admission = PriorityAdmission(settings.admission, clock=time.monotonic,
                                      shadow="shed" in settings.shadow)
        if settings.admission.challenge_on_overload:
            gate.admission = admission  # (its pressure(), asked natively)
        rt = cls(settings, state, gate, admission, clock)
        rt.allow_source = source
        if settings.redis.url:
            from shieldwall.guard._redis import RedisSync
            state.pending = {}
            state.record_ops = True
            rt._sync = RedisSync(settings.redis, state, gate, clock)
        return rt

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        log.info("guard: mode %s%s; allow list: %s", self.state.mode.value,
                 " (pinned)" if self.state.pinned else "", self.allow_source)
        if self.settings.nftables != "off":
            from shieldwall.guard._nft import NftBanSet
            self._nft = await NftBanSet.detect(self.settings.nftables_netns,
                                               required=self.settings.nftables == "on",
                                               clock=self.clock)
            if self._nft is not None:
                self.state.listeners.append(self._nft.on_change)
                for key, entry in self.state.bans.items():
                    self._nft.on_change("ban", key, entry)
                await self._nft.apply()
                self._tasks.append(asyncio.create_task(self._keep("nftables", self._nft.run)))
        if self._sync is not None:
            await self._sync.start()
            self._tasks.append(asyncio.create_task(self._keep("redis sync", self._sync.run)))
        self._tasks.append(asyncio.create_task(self._keep("sweeper", self._sweeper)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            for task in stuck:
                log.error("guard: background task %s did not stop", task.get_coro())
        self._tasks.clear()
        if self._sync is not None:
            await self._sync.close()
        if self._nft is not None:
            await self._nft.close()

    async def _keep(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; if it breaks, say so loudly and start it again."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.task_failures += 1
                log.exception("guard: background %s failed; restarting it in 1s", name)
                await asyncio.sleep(1.0)

    async def _sweeper(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            n += 1
            now = self.clock()
            self.state.sweep(now, buckets=n % BUCKET_SWEEP_EVERY == 0)
            if n % BUCKET_SWEEP_EVERY == 0:
                self.gate.conduct.sweep(now)
            if self._peer_verdicts:
                self._apply_peer_verdicts()

    async def sync_now(self) -> None:
        """One Redis sync round now (tests and shutdown; the loop does it by itself)."""
        if self._sync is not None:
            await self._sync.sync_once()

    # -- control -----------------------------------------------------------

    def set_mode(self, mode: Mode | None, source: str) -> None:
        """Set the mode. ``source="detector"`` is ignored while an operator has
        pinned the mode (the detector's verdict is kept for when the pin goes);
        any other source pins it, and ``mode=None`` unpins (``auto``)."""
        before = self.state.mode
        self.state.set_mode(mode, source)
        self._note_mode(source)
        if self.state.mode is not before:
            log.warning("guard: mode %s -> %s (by %s)", before.value, self.state.mode.value,
                        source)

    # -- peer workers on one machine (no Redis) -------------------------------

    def peer_report(self) -> tuple[str, bytes] | None:
        """For the peer workers (called every second): this worker's detector
        verdict when it changed or every PEER_REPORT_EVERY s, and the suspects
        its detector named since the last report. With Redis the sync shares
        verdicts; suspects (which Redis does not carry) still go to the peers."""
        now = self.clock()
        suspects, self._suspects_out = self._suspects_out or [], []
        own = self.state.own_detector_mode
        last = self._reported
        body: dict[str, Any] = {"node": self.node}
        if self._sync is None and (last is None or last[0] is not own
                                   or now - last[1] >= PEER_REPORT_EVERY):
            self._reported = (own, now)
            body.update(mode=own.value, at=now)
        if suspects:
            body["suspects"] = [[a, score, until] for a, score, until in suspects]
        if self.gate.counts and self.gate.counts != self._counts_sent:
            self._counts_sent = dict(self.gate.counts)
            body["counters"] = self._counts_sent
        if len(body) == 1:
            return None
        return "/peer/guard/report", json.dumps(body).encode()

    def peer_suspects(self, items: list[Any]) -> int:
        """Suspects a peer worker's detector named; returns how many were taken."""
        now = self.clock()
        n = 0
        for item in items[:MAX_PEER_SUSPECTS]:
            try:
                address, score, until = str(item[0]), float(item[1]), float(item[2])
            except (ValueError, TypeError, IndexError):
                continue
            if until > now and 0.0 <= score <= 1.0:
                self.state.mark_suspect(address, score, until)
                try:
                    self._auto_ban(address, score)  # each worker closes it at accept
                except ValueError:
                    pass
                n += 1
        return n

    def peer_counters(self, node: str, counts: dict[str, Any]) -> None:
        """A peer worker's gate counters (cumulative, as it reported them last)."""
        if node == self.node:
            return
        if node not in self._peer_counts and len(self._peer_counts) >= MAX_PEER_NODES:
            return  # a restart loop; the counters of the first nodes stay
        self._peer_counts[node] = {str(k): int(v) for k, v in counts.items()
                                   if isinstance(v, int) and not isinstance(v, bool)}

    def shield_counters(self) -> dict[str, int]:
        """This worker's gate counters plus every peer worker's last report."""
        total = dict(self.gate.counts)
        for counts in self._peer_counts.values():
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
        return dict(sorted(total.items()))

    def peer_verdict(self, node: str, mode: Mode, at: float) -> None:
        """A peer worker's detector verdict. The detector mode in force is the
        most severe verdict this worker's detector or any peer's reported in
        the last PEER_FRESH s, as with Redis."""
        if self._sync is not None or node == self.node:
            return
        self._peer_verdicts[node] = (mode, at)
        self._apply_peer_verdicts()

    def _apply_peer_verdicts(self) -> None:
        now = self.clock()
        for node, (_, at) in list(self._peer_verdicts.items()):
            if now - at > PEER_FRESH:
                del self._peer_verdicts[node]
        peer = max((m for m, _ in self._peer_verdicts.values()), key=SEVERITY.index,
                   default=Mode.NORMAL)
        if peer is self.state.peer_detector_mode:
            return
        before = self.state.mode
        self.state.set_mode(peer, "detector", remote=True)
        if self.state.mode is not before:
            log.warning("guard: mode %s -> %s (by a peer worker's detector)", before.value,
                        self.state.mode.value)

    def snapshot(self) -> dict[str, Any]:
        """What a restarted peer worker needs to act as this one: run-time
        bans and allows, the operator's pin, the fresh detector verdicts and
        the current suspects."""
        now = self.clock()

        def entries(items: Any) -> list[list[Any]]:
            return [[k, e.until if math.isfinite(e.until) else None, e.reason, e.source]
                    for k, e in items if e.until > now]

        verdicts = {n: [m.value, at] for n, (m, at) in self._peer_verdicts.items()}
        verdicts[self.node] = [self.state.own_detector_mode.value, now]
        suspects = [[a, score, until] for a, (score, until) in self.state.suspects.items()
                    if until > now][:MAX_PEER_SUSPECTS]
        return {"bans": entries(self.state.bans.items()),
                "allows": entries(self.state.allows.items()),
                "pinned": self.state.pinned.value if self.state.pinned is not None else None,
                "verdicts": verdicts, "suspects": suspects}

    def restore(self, snap: Any) -> None:
        """Take a peer's :meth:`snapshot` (a restarted worker, before it serves).
        Malformed parts are skipped, never fatal: the worker then runs on its config."""
        if not isinstance(snap, dict):
            return
        now = self.clock()
        for kind in ("bans", "allows"):
            for item in snap.get(kind) or []:
                try:
                    key, until, reason, source = item
                    entry = ListEntry(math.inf if until is None else float(until),
                                      str(reason), str(source))
                    if entry.until <= now:
                        continue
                    if kind == "bans":
                        self.state.ban(str(key), entry, remote=True)
                    else:
                        self.state.allow(str(key), entry, remote=True)
                except (ValueError, TypeError):
                    log.warning("guard: skipped a malformed %s entry from a peer: %r", kind, item)
        if "pinned" in snap:
            try:
                pinned = None if snap["pinned"] is None else Mode(snap["pinned"])
                self.state.set_mode(pinned, "operator", remote=True)
            except ValueError:
                log.warning("guard: skipped a peer's pinned mode %r", snap["pinned"])
        if isinstance(snap.get("suspects"), list):
            self.peer_suspects(snap["suspects"])
        if self._sync is None:
            for node, item in (snap.get("verdicts") or {}).items():
                try:
                    mode, at = item
                    if str(node) != self.node:
                        self._peer_verdicts[str(node)] = (Mode(mode), float(at))
                except (ValueError, TypeError):
                    continue
            self._apply_peer_verdicts()
        log.info("guard: took a peer worker's state: mode %s%s, %d ban(s)",
                 self.state.mode.value, " (pinned)" if self.state.pinned else "",
                 len(snap.get("bans") or []))

    def mark_suspect(self, client: str, score: float, ttl: float) -> None:
        ident = self.gate._ids.get(client)
        until = self.clock() + ttl
        self.state.mark_suspect(ident.address, score, until)
        out = self._suspects_out
        if out is not None and len(out) < MAX_PEER_SUSPECTS:
            out.append((ident.address, score, until))
        self._auto_ban(ident.address, score)

    def _auto_ban(self, address: str, score: float) -> None:
        """A client the detector is sure of goes to the ban list (and so to
        the kernel's drop set) at once; never an allow-listed one."""
        s = self.settings
        if s.auto_ban == "off" or (s.auto_ban == "nftables" and self._nft is None) \
                or score < s.auto_ban_score:
            return
        now = self.clock()
        lists = self.gate._lists_for(self.gate._ids.get(address), now)
        if lists.allowed or (lists.ban is not None and lists.ban.until > now):
            return
        self.ban(address, ttl=min(s.auto_ban_ttl, s.ban_max_ttl),
                 reason=f"detector score {score:.2f}", source="auto")

    def ban(self, value: str, ttl: float, reason: str = "", source: str = "operator") -> str:
        if not 0 < ttl <= self.settings.ban_max_ttl:
            raise ValueError(f"ttl must be between 0 and {self.settings.ban_max_ttl:g} seconds, "
                             f"got {ttl:g}")
        parse_network(value)
        key = self.state.ban(value, ListEntry(self.clock() + ttl, reason, source))
        log.warning("guard: banned %s for %gs (%s, by %s)", key, ttl, reason or "no reason",
                    source)
        return key

    def unban(self, value: str) -> bool:
        return self.state.unban(value)

    def allow(self, value: str, ttl: float, reason: str = "", source: str = "operator") -> str:
        if not 0 < ttl <= self.settings.ban_max_ttl:
            raise ValueError(f"ttl must be between 0 and {self.settings.ban_max_ttl:g} seconds, "
                             f"got {ttl:g}")
        parse_network(value)
        return self.state.allow(value, ListEntry(self.clock() + ttl, reason, source))

    def unallow(self, value: str) -> bool:
        return self.state.unallow(value)

    def _note_mode(self, source: str) -> None:
        """Remember when the mode in force last changed and by whom (status()'s
        ``mode_since``: the drill's timeline puts the switch at this instant,
        not at the next one-second sample). A change that arrived from a peer
        or through Redis is noted at the next call, at most a second late."""
        mode = self.state.mode
        if self._mode_seen is None or self._mode_seen[0] is not mode:
            self._mode_seen = (mode, self.clock(), source)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        st = self.state
        self._note_mode("peer")
        seen = self._mode_seen
        return {
            "mode": st.mode.value,
            "mode_since": None if seen is None else round(seen[1], 3),
            "mode_by": None if seen is None else seen[2],
            "pinned": st.pinned is not None,
            "detector_mode": st.detector_mode.value,
            "counters": dict(sorted(self.gate.counts.items())),
            "bans": sum(1 for _, e in st.bans.items() if e.until > now),
            "allows": sum(1 for _, e in st.allows.items() if e.until > now),
            "static_allow": len(st.static_allow),
            "static_block": len(st.static_block),
            "suspects": sum(1 for _, until in st.suspects.values() if until > now),
            "buckets": len(st.buckets),
            "admission": self.admission.status(),
            "newcomers": self.gate.conduct.budget.status(),
            "store": self._sync.status() if self._sync is not None else
            {"kind": "memory", "healthy": True},
            "nftables": self._nft.status() if self._nft is not None else
            {"enabled": False, "setting": self.settings.nftables},
            "shadow": list(self.settings.shadow),
            "background_failures": self.task_failures,
            "pid": os.getpid(),
        }

    def metrics_text(self) -> str:
        """Prometheus text exposition of the guard's state, for the proxy to
        append to its /metrics (the store's health is a gauge here)."""
        st = self.status()
        lines = [
            "# HELP shieldwall_guard_mode Current guard mode (1 for the active one).",
            "# TYPE shieldwall_guard_mode gauge",
        ]
        for m in Mode:
            lines.append(f'shieldwall_guard_mode{{mode="{m.value}"}} '
                         f"{1 if st['mode'] == m.value else 0}")
        lines += [
            "# HELP shieldwall_guard_mode_pinned 1 when an operator pinned the mode.",
            "# TYPE shieldwall_guard_mode_pinned gauge",
            f"shieldwall_guard_mode_pinned {1 if st['pinned'] else 0}",
            "# HELP shieldwall_guard_store_healthy 1 when the shared store (Redis) answers; "
            "0 while the shield serves on local state only.",
            "# TYPE shieldwall_guard_store_healthy gauge",
            f"shieldwall_guard_store_healthy {1 if st['store'].get('healthy') else 0}",
            "# HELP shieldwall_guard_bans Active run-time bans.",
            "# TYPE shieldwall_guard_bans gauge",
            f"shieldwall_guard_bans {st['bans']}",
            "# HELP shieldwall_guard_suspects Clients currently classed suspect.",
            "# TYPE shieldwall_guard_suspects gauge",
            f"shieldwall_guard_suspects {st['suspects']}",
            "# HELP shieldwall_guard_events_total Guard decisions and events by kind "
            "(all the workers of this shield).",
            "# TYPE shieldwall_guard_events_total counter",
        ]
        for key, value in self.shield_counters().items():
            lines.append(f'shieldwall_guard_events_total{{kind="{key}"}} {value}')
        lines += ["# HELP shieldwall_admission_limit Concurrency limit per backend.",
                  "# TYPE shieldwall_admission_limit gauge"]
        for backend, a in st["admission"].items():
            lines.append(f'shieldwall_admission_limit{{backend="{backend}"}} {a["limit"]}')
        lines += ["# HELP shieldwall_admission_waiting Requests queued per backend.",
                  "# TYPE shieldwall_admission_waiting gauge"]
        for backend, a in st["admission"].items():
            lines.append(f'shieldwall_admission_waiting{{backend="{backend}"}} {a["waiting"]}')
        return "\n".join(lines) + "\n"

    def bans(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = [{"value": k, "until": e.until, "ttl": round(e.until - now, 1), "reason": e.reason,
                "source": e.source} for k, e in self.state.bans.items() if e.until > now]
        return sorted(out, key=lambda d: str(d["value"]))

    def allows(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = [{"value": k, "until": e.until, "ttl": round(e.until - now, 1), "reason": e.reason,
                "source": e.source} for k, e in self.state.allows.items() if e.until > now]
        return sorted(out, key=lambda d: str(d["value"]))
