"""Many shield processes acting as one, without Redis on the request path.

The gate reads and writes :class:`LocalState` only. Every ``sync_interval``
(30 ms by default) this loop sends one pipeline to Redis with

- the list and mode changes made here since the last round (``outbox``),
- the tokens this process took from each bucket (``pending``), applied by a
  Lua script that refills the shared bucket by its rate, subtracts them and
  returns what is left, which becomes the local bucket's level,
- a read of the change counter; when it moved (or every few seconds) the
  block/allow lists and the mode are read back whole.

A limit can therefore be overshot: each process spends from its local copy
for one interval before it learns what the others spent, so at most one
batch per process (≤ the bucket's burst, usually rate × interval) goes
through beyond the shared limit. Docs: docs/GUARD.md.

When Redis goes away the shield keeps serving on local state, says so in
``status()["store"]`` and the log (once), keeps the changes to replay, and
resynchronises when Redis is back. Every key has a TTL.

Behind Sentinels (``redis+sentinel://``, shieldwall.guard._redis_url) a list
change leaves the outbox only once a replica has it too (``WAIT``): a primary
killed right after it acknowledged a ban must not take the ban with it. A
change no replica acknowledged is sent again (to the promoted replica, after
a failover) for up to ``ACK_PATIENCE`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from shieldwall.guard._gate import GuardGate
from shieldwall.guard._redis_url import key_prefix, make_client, parse_url
from shieldwall.guard._state import SEVERITY, ListEntry, LocalState, Op
from shieldwall.guard.decision import Mode
from shieldwall.guard.settings import RedisSettings

log = logging.getLogger("shieldwall.guard")

_BUCKETS_LUA = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local spent = tonumber(ARGV[i * 3 - 1])
  local rate = tonumber(ARGV[i * 3])
  local burst = tonumber(ARGV[i * 3 + 1])
  local v = redis.call('HMGET', key, 't', 's')
  local tokens = tonumber(v[1]) or burst
  local stamp = tonumber(v[2]) or now
  if now > stamp then
    tokens = math.min(burst, tokens + (now - stamp) * rate)
    stamp = now
  end
  tokens = math.max(-burst, tokens - spent)
  redis.call('HSET', key, 't', tostring(tokens), 's', tostring(stamp))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1000)
  out[i] = tostring(tokens)
end
return out
"""

LIST_TTL = 31 * 86400
"""Seconds the list, mode, counter and secret keys live after their last write."""
FULL_RELOAD_EVERY = 5.0
ROUND_TIMEOUT = 3.0
DETECTOR_FRESH = 30.0
_SEVERITY = SEVERITY
KEYS_PER_SCRIPT = 500
MAX_OUTBOX = 10_000
ACK_PATIENCE = 5.0
"""Seconds a list change is re-sent while no replica acknowledges it (a
primary whose replicas are all gone still serves; it is said in status)."""
ACK_WAIT_MS = 100
"""How long one round waits for a replica's acknowledgement (rounds that
wrote nothing never wait)."""


def _entry_json(e: ListEntry) -> str:
    return json.dumps({"until": e.until if math.isfinite(e.until) else None,
                       "reason": e.reason, "source": e.source})


def _entry_of(raw: bytes | str) -> ListEntry | None:
    try:
        d = json.loads(raw)
        until = math.inf if d.get("until") is None else float(d["until"])
        return ListEntry(until, str(d.get("reason", "")), str(d.get("source", "")))
    except (ValueError, TypeError, AttributeError):
        return None


class RedisSync:
    def __init__(self, settings: RedisSettings, state: LocalState, gate: GuardGate,
                 clock: Callable[[], float] = time.time) -> None:
        self.s = settings
        self.state = state
        self.gate = gate
        self.clock = clock
        self.target = parse_url(settings.url)
        self.client, self._extra_clients = make_client(self.target, 0.5)
        self._script = self.client.register_script(_BUCKETS_LUA)
        self.k = key_prefix(self.target, settings.prefix)
        self._wait_replicas = 1 if self.target.kind == "sentinel" else 0
        self._unacked_since: float | None = None
        self._resend: list[Op] = []
        """Changes written to the primary that no replica has acknowledged:
        written again next round. Apart from the outbox, so they never hold
        back a reload (the primary has them; a reload shows them)."""
        self.unacked_dropped = 0
        self.healthy = False
        self.failures = 0
        self.rounds = 0
        self.last_error = ""
        self.down_since: float | None = None
        self._seen_ver: bytes | None = None
        self._last_full = -math.inf
        self._shared_secret = False
        self._lock = asyncio.Lock()
        self.node = secrets.token_hex(4)

    def status(self) -> dict[str, Any]:
        return {"kind": "redis", "redis": self.target.kind, "healthy": self.healthy,
                "rounds": self.rounds, "unacked_dropped": self.unacked_dropped,
                "failures": self.failures, "last_error": self.last_error,
                "down_since": self.down_since, "sync_interval": self.s.sync_interval,
                "overshoot": "at most one batch per process (one sync interval of spending)"}

    async def start(self) -> None:
        """Queue this process's pinned mode, share the HMAC key, first sync.
        Never fails: without Redis the shield starts on local state."""
        if self.state.pinned is not None:
            self.state.outbox.append(Op("mode", f"operator:{self.state.pinned.value}"))
        await self.sync_once()

    async def _share_secret(self) -> None:
        if self._shared_secret or self.gate.settings.secret is not None:
            return
        import os
        if os.environ.get("SHIELDWALL_GUARD_SECRET"):
            return
        key = self.k + "secret"
        await self.client.set(key, secrets.token_hex(32), nx=True, ex=LIST_TTL)
        value = await self.client.get(key)
        if value:
            self.gate.set_secret(value if isinstance(value, bytes) else value.encode())
            self._shared_secret = True
            log.info("guard: HMAC key shared through Redis")

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.sync_once(), 1.0)
        except (TimeoutError, RedisError, OSError):
            pass
        await self.client.aclose()
        for extra in self._extra_clients:
            await extra.aclose()

    async def run(self) -> None:
        backoff = self.s.sync_interval
        while True:
            await asyncio.sleep(backoff)
            ok = await self.sync_once()
            backoff = self.s.sync_interval if ok else min(1.0, backoff * 2)

    async def sync_once(self) -> bool:
        """One round; rounds never overlap (a caller's round sees the previous one applied)."""
        async with self._lock:
            try:
                return await asyncio.wait_for(self._round(), ROUND_TIMEOUT)
            except TimeoutError:
                # a round that hangs (a half-dead connection) must not stop the loop
                self.failures += 1
                self.last_error = f"sync round took over {ROUND_TIMEOUT:g}s"
                self.healthy = False
                self._seen_ver = None
                return False

    async def _round(self) -> bool:
        st = self.state
        ops, st.outbox = self._resend + st.outbox, []
        self._resend = []
        pending = st.pending or {}
        st.pending = {}
        now = self.clock()
        try:
            await self._share_secret()
            pipe = self.client.pipeline(transaction=False)
            wrote = self._queue_ops(pipe, ops, now)
            waited = wrote and self._wait_replicas > 0
            if wrote:
                pipe.incr(self.k + "ver")
                pipe.expire(self.k + "ver", LIST_TTL)
                if waited:
                    pipe.wait(self._wait_replicas, ACK_WAIT_MS)
            pipe.get(self.k + "ver")
            results = await pipe.execute()
            ver = results[-1] or b"0"
            if waited:
                self._check_acked(ops, int(results[-2]), now)
            remote = await self._push_buckets(pending, now)
            stale = ver != self._seen_ver or now - self._last_full >= FULL_RELOAD_EVERY
            if stale and not st.outbox:  # changes made meanwhile go first, next round
                await self._reload(now)
                self._seen_ver = ver
                self._last_full = now
        except asyncio.CancelledError:
            st.outbox[:0] = ops  # not lost: the next round sends them
            raise
        except (RedisError, OSError, TimeoutError) as e:
            st.outbox[:0] = ops
            del st.outbox[MAX_OUTBOX:]
            self.failures += 1
            self.last_error = f"{e.__class__.__name__}: {e}"
            if self.healthy or self.down_since is None:
                log.error("guard: Redis unreachable (%s); serving on local state, "
                          "will resynchronise when it returns", self.last_error)
                self.down_since = now
            self.healthy = False
            self._seen_ver = None
            return False
        if not self.healthy:
            if self.down_since is not None and self.rounds:
                log.warning("guard: Redis is back after %.1fs; resynchronised",
                            now - self.down_since)
            self.healthy = True
            self.down_since = None
        self.rounds += 1
        self._apply_buckets(remote)
        return True

    def _check_acked(self, ops: list[Op], replicas: int, now: float) -> None:
        """Keep changes no replica has yet, to send again next round."""
        if replicas >= self._wait_replicas:
            self._unacked_since = None
            return
        if self._unacked_since is None:
            self._unacked_since = now
        if now - self._unacked_since <= ACK_PATIENCE:
            self._resend = ops
            return
        self.unacked_dropped += len(ops)
        self._unacked_since = None
        log.error("guard: no Redis replica acknowledged %d change(s) for %.0fs; they are on the "
                  "primary only", len(ops), ACK_PATIENCE)

    def _queue_ops(self, pipe: Any, ops: list[Op], now: float) -> bool:
        k = self.k
        wrote = False
        for op in ops:
            wrote = True
            if op.kind in ("ban", "allow") and op.entry is not None:
                h = k + ("bans" if op.kind == "ban" else "allows")
                pipe.hset(h, op.value, _entry_json(op.entry))
                pipe.expire(h, LIST_TTL)
            elif op.kind in ("unban", "unallow"):
                pipe.hdel(k + ("bans" if op.kind == "unban" else "allows"), op.value)
            elif op.kind == "mode":
                source, _, mode = op.value.partition(":")
                if source == "detector":
                    self._report_detector(pipe, now)
                else:
                    pipe.hset(k + "mode", "pinned", "" if mode == "auto" else mode)
                pipe.expire(k + "mode", LIST_TTL)
        return wrote

    def _report_detector(self, pipe: Any, now: float) -> None:
        """This process's detector verdict, stamped; the shared detector mode is
        the most severe verdict any process reported within DETECTOR_FRESH s."""
        pipe.hset(self.k + "mode", "detector:" + self.node,
                  f"{self.state.own_detector_mode.value}|{now:.3f}")

    async def _push_buckets(self, pending: dict[str, list[float]],
                            now: float) -> dict[str, float]:
        if not pending:
            return {}
        items = list(pending.items())
        out: dict[str, float] = {}
        pipe = self.client.pipeline(transaction=False)
        chunks = []
        cluster = self.target.kind == "cluster"
        results = []
        for i in range(0, len(items), KEYS_PER_SCRIPT):
            chunk = items[i:i + KEYS_PER_SCRIPT]
            args: list[float] = [now]
            for _, (spent, rate, burst) in chunk:
                args += [spent, rate, burst]
            keys = [self.k + "b:" + key for key, _ in chunk]
            if cluster:
                # redis-py's cluster pipeline does not load scripts; one
                # call per chunk (all keys in one slot, so one node).
                results.append(await self._script(keys=keys, args=args))
            else:
                await self._script(keys=keys, args=args, client=pipe)
            chunks.append(chunk)
        if not cluster:
            results = await pipe.execute()
        for chunk, res in zip(chunks, results, strict=True):
            for (key, _), tokens in zip(chunk, res, strict=True):
                out[key] = float(tokens)
        return out

    def _apply_buckets(self, remote: dict[str, float]) -> None:
        buckets = self.state.buckets
        since = self.state.pending or {}
        for key, tokens in remote.items():
            b = buckets.get(key)
            if b is None:
                continue
            spent_meanwhile = since[key][0] if key in since else 0.0
            b.tokens = tokens - spent_meanwhile

    async def _reload(self, now: float) -> None:
        k = self.k
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(k + "bans")
        pipe.hgetall(k + "allows")
        pipe.hgetall(k + "mode")
        pipe.expire(k + "secret", LIST_TTL)
        self._report_detector(pipe, now)  # keep our verdict fresh
        raw_bans, raw_allows, raw_mode, _, _ = await pipe.execute()
        bans, dead_b = self._entries(raw_bans, now)
        allows, dead_a = self._entries(raw_allows, now)
        if dead_b or dead_a:
            pipe = self.client.pipeline(transaction=False)
            if dead_b:
                pipe.hdel(k + "bans", *dead_b)
            if dead_a:
                pipe.hdel(k + "allows", *dead_a)
            await pipe.execute()
        self.state.replace_lists(bans, allows)
        mode = {bytes(a).decode(): bytes(b).decode() for a, b in raw_mode.items()}
        if "pinned" in mode:
            pinned = mode["pinned"]
            self.state.set_mode(Mode(pinned) if pinned else None, "operator", remote=True)
        verdicts = [0]
        for field, value in mode.items():
            if field.startswith("detector:") and field != "detector:" + self.node:
                m, _, stamp = value.partition("|")
                try:
                    if now - float(stamp) <= DETECTOR_FRESH:
                        verdicts.append(_SEVERITY.index(Mode(m)))
                except ValueError:
                    continue
        self.state.set_mode(_SEVERITY[max(verdicts)], "detector", remote=True)

    @staticmethod
    def _entries(raw: dict[Any, Any], now: float) -> tuple[dict[str, ListEntry], list[str]]:
        out: dict[str, ListEntry] = {}
        dead: list[str] = []
        for key, value in raw.items():
            name = bytes(key).decode()
            e = _entry_of(value)
            if e is None or e.until <= now:
                dead.append(name)
            else:
                out[name] = e
        return out, dead
