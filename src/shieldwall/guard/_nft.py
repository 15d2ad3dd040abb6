"""Banned addresses down to the kernel: an nftables set that drops their packets.

Optional (``guard.nftables = "auto"`` or ``"on"``): detected at start (root,
``nft`` present, and our table can be created), logged either way. The shield
only ever touches its own table, ``inet shieldwall``: two interval sets with
timeouts (``ban4``, ``ban6``) and an input chain that drops their sources. The
kernel expires elements by itself, so a ban ends on time even if the shield
dies; the table is deleted at a clean stop. With ``nftables_netns`` every
command runs inside that network namespace (``ip netns exec``), which is how
the tests use it without touching the host's ruleset.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from shieldwall.guard._state import ListEntry

log = logging.getLogger("shieldwall.guard")

TABLE = "shieldwall"
_SETUP = f"""table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
  set ban4 {{ type ipv4_addr; flags interval, timeout; }}
  set ban6 {{ type ipv6_addr; flags interval, timeout; }}
  chain input {{
    type filter hook input priority -10; policy accept;
    ip saddr @ban4 drop
    ip6 saddr @ban6 drop
  }}
}}
"""
APPLY_INTERVAL = 0.25


class NftError(RuntimeError):
    pass


class NftBanSet:
    def __init__(self, argv: list[str], netns: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.argv = argv
        self.clock = clock
        self.netns = netns
        self.installed: set[str] = set()
        self._queue: list[tuple[str, str, float]] = []
        self.applied = 0
        self.errors = 0
        self.last_error = ""

    @classmethod
    async def detect(cls, netns: str = "", required: bool = False,
                     clock: Callable[[], float] = time.time) -> NftBanSet | None:
        """Our table set up and ready, or None (logged) when not possible here."""
        nft = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft")
                                      else None)
        why = ""
        if os.geteuid() != 0:
            why = "not running as root"
        elif nft is None:
            why = "the nft command is not installed"
        argv = ([shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", netns, nft or "nft"]
                if netns else [nft or "nft"])
        self = cls(argv, netns, clock)
        if not why:
            try:
                await self._nft(_SETUP)
            except NftError as e:
                why = str(e)
        if why:
            msg = f"guard: nftables drop set not available ({why}); bans stay in user space"
            if required:
                raise RuntimeError(msg + " (guard.nftables = \"on\")")
            log.warning(msg)
            return None
        log.info("guard: nftables drop set ready (table inet %s%s)", TABLE,
                 f" in netns {netns}" if netns else "")
        return self

    async def _nft(self, script: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.argv, "-f", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(script.encode()), 10)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise NftError(err.decode(errors="replace").strip().splitlines()[0]
                           if err.strip() else f"nft exited {proc.returncode}")

    def on_change(self, kind: str, key: str, entry: ListEntry | None) -> None:
        """Called by the state on ban/unban; applied in the background."""
        ttl = 0.0
        if entry is not None:
            ttl = entry.until - self.clock() if math.isfinite(entry.until) else 0.0
            if ttl <= 0 and math.isfinite(entry.until):
                return
        self._queue.append((kind, key, ttl))

    @staticmethod
    def _element(key: str, ttl: float) -> tuple[str, str]:
        net = ipaddress.ip_network(key)
        text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        set_name = "ban4" if net.version == 4 else "ban6"
        if ttl > 0:
            text += f" timeout {max(1, math.ceil(ttl))}s"
        return set_name, text

    async def apply(self) -> None:
        queue, self._queue = self._queue, []
        lines: list[str] = []
        for kind, key, ttl in queue:
            set_name, elem = self._element(key, ttl)
            bare = elem.split(" timeout")[0]
            if key in self.installed:
                lines.append(f"delete element inet {TABLE} {set_name} {{ {bare} }}")
                self.installed.discard(key)
            if kind == "ban":
                lines.append(f"add element inet {TABLE} {set_name} {{ {elem} }}")
                self.installed.add(key)
        if not lines:
            return
        try:
            await self._nft("\n".join(lines) + "\n")
            self.applied += len(lines)
        except NftError:
            for line in lines:  # one by one: an overlap must not lose the rest
                try:
                    await self._nft(line + "\n")
                    self.applied += 1
                except NftError as e:
                    self.errors += 1
                    self.last_error = str(e)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(APPLY_INTERVAL)
            if self._queue:
                await self.apply()

    async def close(self) -> None:
        try:
            await self._nft(f"delete table inet {TABLE}\n")
        except (NftError, OSError) as e:
            log.warning("guard: could not remove table inet %s: %s", TABLE, e)

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "netns": self.netns, "elements": len(self.installed),
                "applied": self.applied, "errors": self.errors, "last_error": self.last_error}
