"""Signed, stateless tokens: the session cookie, the challenge string and the
pass token. Each is ``base64url(payload) "." base64url(mac)`` where the MAC is
HMAC-SHA256 under a key derived per purpose, so a session can never be
presented as a pass token. Verification is O(1), needs no store, and compares
MACs with :func:`hmac.compare_digest`. Verified tokens are cached (bounded) so
a returning browser costs a dict probe, while forged ones are never cached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from binascii import b2a_base64
from typing import Final

_MAC_BYTES: Final = 16


_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def b64(data: bytes) -> str:
    """base64url without padding. (The encoder's own newline and padding are
    cut by one slice: a keyword argument and an rstrip were two slow calls.)"""
    return b2a_base64(data)[:(len(data) * 4 + 2) // 3].translate(_URLSAFE).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and verifies ``|``-separated field lists for one purpose."""

    def __init__(self, secret: bytes, purpose: str, cache_size: int = 65536) -> None:
        self._key = hmac.new(secret, b"shieldwall/" + purpose.encode(), hashlib.sha256).digest()
        # HMAC-SHA256 by its definition, with the keyed inner and outer states
        # made once: a MAC is then two state copies (the hmac module pays for
        # the key schedule on every call).
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in self._key.ljust(64, b"\0")))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in self._key.ljust(64, b"\0")))
        self._cache: dict[str, tuple[str, ...]] = {}
        self._cache_size = cache_size

    def _mac(self, payload: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_MAC_BYTES]

    def sign(self, *fields: str) -> str:
        return self.sign_text("|".join(fields))

    def sign_text(self, text: str) -> str:
        """The token of fields already joined with ``|`` (what ``sign`` makes of them)."""
        payload = text.encode()
        return b64(payload) + "." + b64(self._mac(payload))

    def verify(self, token: str) -> tuple[str, ...] | None:
        """The fields of a genuine token, or None (forged, truncated, garbage)."""
        hit = self._cache.get(token)
        if hit is not None:
            return hit
        head, dot, tail = token.partition(".")
        if not dot or len(token) > 512:
            return None
        try:
            payload = _unb64(head)
            mac = _unb64(tail)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(payload)) or b64(mac) != tail \
                or b64(payload) != head:
            return None  # forged, or a non-canonical spelling of a genuine token
        try:
            fields = tuple(payload.decode().split("|"))
        except UnicodeDecodeError:
            return None
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = fields
        return fields


def leading_zero_bits(digest: bytes) -> int:
    n = 0
    for byte in digest:
        if byte == 0:
            n += 8
            continue
        return n + 8 - byte.bit_length()
    return n


def pow_ok(challenge: str, nonce: str, difficulty: int) -> bool:
    """Does SHA-256(challenge ":" nonce) start with ``difficulty`` zero bits?"""
    digest = hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()
    return leading_zero_bits(digest) >= difficulty


def solve(challenge: str, difficulty: int) -> int:
    """The smallest nonce that solves a challenge (what a browser's script does)."""
    n = 0
    while not pow_ok(challenge, str(n), difficulty):
        n += 1
    return n


def cookie_value(cookie_header: str, name: str) -> str:
    """The value of cookie ``name`` in a raw Cookie header ("" when absent).
    Cheaper than a full parse: one ``find`` in the common case."""
    if not cookie_header:
        return ""
    start = 0
    needle = name + "="
    while True:
        i = cookie_header.find(needle, start)
        if i < 0:
            return ""
        if i == 0 or cookie_header[i - 1] in "; ":
            j = cookie_header.find(";", i)
            return (cookie_header[i + len(needle):] if j < 0
                    else cookie_header[i + len(needle):j]).strip()
        start = i + 1
