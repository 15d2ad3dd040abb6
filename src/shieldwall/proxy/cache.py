"""The stale cache: the last good copy of cacheable GET responses.

It is not an HTTP cache (nothing is served from it while a backend answers);
it is what the shop shows when no backend can: a page with ``Age`` and
``X-Shieldwall-Stale: 1`` instead of an error. Kept in memory up to a byte
budget, least recently stored/served evicted first. A copy is refreshed at
most every ``refresh`` seconds, so on the hot path a fresh entry costs one
dict lookup. Pure: the clock is passed in.
"""

from __future__ import annotations

from collections import OrderedDict


class Entry:
    __slots__ = ("body", "headers", "reason", "size", "status", "stored_at")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes, stored_at: float) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.stored_at = stored_at
        self.size = len(body) + sum(len(n) + len(v) + 4 for n, v in headers) + 128


def cacheable(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """A 200 without Set-Cookie, without no-store/private and not varying on
    the cookie or on everything."""
    if status != 200:
        return False
    for name, value in headers:
        n = name.lower()
        if n == b"set-cookie":
            return False
        if n == b"cache-control":
            v = value.lower()
            if b"no-store" in v or b"private" in v:
                return False
        elif n == b"vary":
            v = value.lower()
            if b"*" in v or b"cookie" in v or b"authorization" in v:
                return False
    return True


class StaleCache:
    def __init__(self, max_bytes: int, max_object_bytes: int, max_stale: float,
                 refresh: float) -> None:
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self.max_stale = max_stale
        self.refresh = refresh
        self.bytes = 0
        self.hits = 0
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def wants(self, key: bytes, now: float) -> bool:
        """Should the response now passing for ``key`` be captured?"""
        if self.max_bytes <= 0:
            return False
        e = self._entries.get(key)
        return e is None or now - e.stored_at >= self.refresh

    def fresh_until(self, key: bytes) -> float:
        """Until when a response for ``key`` need not be captured (``wants``
        is false before it): the copy's time plus ``refresh``, 0 without a
        copy, infinity when the cache is off."""
        if self.max_bytes <= 0:
            return float("inf")
        e = self._entries.get(key)
        return 0.0 if e is None else e.stored_at + self.refresh

    def store(self, key: bytes, entry: Entry) -> None:
        if len(entry.body) > self.max_object_bytes or entry.size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            _, ev = self._entries.popitem(last=False)
            self.bytes -= ev.size

    def get(self, key: bytes, now: float) -> Entry | None:
        e = self._entries.get(key)
        if e is None:
            return None
        if now - e.stored_at > self.max_stale:
            del self._entries[key]
            self.bytes -= e.size
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return e

    @staticmethod
    def render(entry: Entry, now: float, head_only: bool, close: bool) -> bytes:
        age = max(0, int(now - entry.stored_at))
        parts = [b"HTTP/1.1 %d %s\r\n" % (entry.status, entry.reason)]
        for n, v in entry.headers:
            parts.append(n + b": " + v + b"\r\n")
        parts.append(b"Content-Length: %d\r\nAge: %d\r\nX-Shieldwall-Stale: 1\r\n"
                     b'Warning: 110 shieldwall "Response is Stale"\r\n' % (len(entry.body), age))
        if close:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if not head_only:
            parts.append(entry.body)
        return b"".join(parts)
