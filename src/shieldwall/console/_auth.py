"""Who may use the console, and which requests are the console's own.

A browser logs in once with the admin token (a form post); it gets a random
session id in an ``HttpOnly; SameSite=Strict`` cookie and reads a CSRF token
from ``/console/api/session``. Every change (any method but GET/HEAD) made
with the cookie must carry that token in ``X-CSRF-Token`` and come from the
console's own origin: ``Sec-Fetch-Site`` (when the browser sends it) must be
``same-origin`` or ``none`` and ``Origin`` (when sent) must be this listener.

SameSite alone is not enough here: another port on the same host
(``http://127.0.0.1:8080`` against an admin listener on ``127.0.0.1:9180``)
is the *same site*, so the browser sends a Strict cookie with its form
posts; the Origin, Sec-Fetch-Site and CSRF checks are what refuse them.

Sessions live in the worker's memory (a restart logs everyone out); the
token is compared in constant time and failed logins are rate limited.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

COOKIE = "shieldwall_console"
SESSION_TTL = 12 * 3600.0
"""A console login lasts one on-call shift."""
MAX_SESSIONS = 64
"""Oldest sessions are dropped beyond this (a login loop cannot fill memory)."""
LOGIN_FAILURES_PER_MINUTE = 10
"""Wrong tokens allowed per minute (all clients together) before logins answer 429."""
MAX_OPERATOR = 40


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    csrf: str
    operator: str
    expires: float


class ConsoleAuth:
    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self._failures: deque[float] = deque()

    def login_blocked(self) -> bool:
        now = self.clock()
        while self._failures and self._failures[0] < now - 60.0:
            self._failures.popleft()
        return len(self._failures) >= LOGIN_FAILURES_PER_MINUTE

    def login(self, given: str, operator: str) -> Session | None:
        """A new session for the right token; None (and a counted failure) otherwise."""
        if not self.token or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            self._failures.append(self.clock())
            return None
        now = self.clock()
        for sid in [s for s, v in self.sessions.items() if v.expires <= now]:
            del self.sessions[sid]
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]
        name = "".join(c for c in operator.strip() if c.isprintable())[:MAX_OPERATOR]
        s = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24), name or "operator",
                    now + SESSION_TTL)
        self.sessions[s.sid] = s
        return s

    def session(self, headers: dict[str, str]) -> Session | None:
        sid = cookie_value(headers.get("cookie", ""), COOKIE)
        if not sid:
            return None
        s = self.sessions.get(sid)
        if s is None or s.expires <= self.clock():
            return None
        return s

    def logout(self, s: Session) -> None:
        self.sessions.pop(s.sid, None)

    @staticmethod
    def csrf_ok(s: Session, headers: dict[str, str]) -> bool:
        return hmac.compare_digest(headers.get("x-csrf-token", "").encode(), s.csrf.encode())

    @staticmethod
    def set_cookie(s: Session) -> str:
        return (f"{COOKIE}={s.sid}; Path=/; Max-Age={int(SESSION_TTL)}; HttpOnly; "
                "SameSite=Strict")

    @staticmethod
    def clear_cookie() -> str:
        return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"


def cookie_value(header: str, name: str) -> str:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""


def cross_site(headers: dict[str, str]) -> str | None:
    """Why this request does not come from the console's own pages, or None.
    Clients that send neither header (the CLI, curl) pass."""
    site = headers.get("sec-fetch-site", "").lower()
    if site and site not in ("same-origin", "none"):
        return f"a {site} request (Sec-Fetch-Site) may not change the shield"
    origin = headers.get("origin")
    if origin is not None:
        host = headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            return f"Origin {origin!r} is not this admin listener ({host!r})"
    return None
