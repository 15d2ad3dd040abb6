"""Solving the shield's challenge the way a browser does (pure).

The wire protocol (docs/CHALLENGE.md): the challenge page carries
``<meta name="shieldwall-challenge" content="{JSON}">`` with ``challenge``,
``difficulty`` (leading zero bits), ``verify`` and ``redirect``. The answer
is the smallest decimal nonce ``n`` such that SHA-256(challenge + ":" + n)
starts with ``difficulty`` zero bits; the browser then GETs
``verify?c=<challenge>&n=<n>&r=<redirect>`` and follows the 302.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from urllib.parse import quote

_META = re.compile(
    rb"""<meta\s+name\s*=\s*["']shieldwall-challenge["']\s+content\s*=\s*(?:"([^"]*)"|'([^']*)')""",
    re.IGNORECASE,
)
MAX_DIFFICULTY = 28
"""A browser gives up past this (2^28 hashes is minutes of JavaScript)."""


@dataclass(frozen=True, slots=True)
class Challenge:
    challenge: str
    difficulty: int
    verify: str
    redirect: str

    def verify_target(self, nonce: int) -> str:
        sep = "&" if "?" in self.verify else "?"
        return (f"{self.verify}{sep}c={quote(self.challenge, safe='')}&n={nonce}"
                f"&r={quote(self.redirect, safe='')}")


def find(page: bytes) -> Challenge | None:
    """The challenge in an HTML page, or None when the page is not a challenge."""
    if b"shieldwall-challenge" not in page:
        return None
    m = _META.search(page)
    if m is None:
        return None
    raw = html.unescape((m.group(1) or m.group(2) or b"").decode("utf-8", "replace"))
    try:
        data = json.loads(raw)
        ch = Challenge(str(data["challenge"]), int(data["difficulty"]),
                       str(data.get("verify", "/.shieldwall/verify")), str(data.get("redirect", "/")))
    except (ValueError, KeyError, TypeError):
        return None
    if not 0 <= ch.difficulty <= MAX_DIFFICULTY:
        return None
    return ch


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def solve(challenge: str, difficulty: int, limit: int = 1 << 30) -> int:
    """The smallest nonce meeting ``difficulty``; raises ValueError past ``limit`` tries."""
    prefix = hashlib.sha256((challenge + ":").encode())
    full, rest = divmod(difficulty, 8)
    zero = bytes(full)
    mask = (0xFF << (8 - rest)) & 0xFF if rest else 0
    for n in range(limit):
        h = prefix.copy()
        h.update(str(n).encode())
        d = h.digest()
        if d[:full] == zero and (not mask or not d[full] & mask):
            return n
    raise ValueError(f"no nonce below {limit} for difficulty {difficulty}")
