"""The contract between the guard (decides) and the proxy (enforces).

The proxy builds a :class:`RequestFacts` from the request line and headers
alone, before any body byte is read, and asks a :class:`Gate` for a
:class:`Decision`. The decision is a record, not a callback: the proxy only
enforces it, so the same record can be logged, counted, replayed and run in
shadow mode. See crowdsec's decision model for the idea.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Protocol

from shieldwall.fastinit import fast_init


class Action(StrEnum):
    ALLOW = "allow"
    LIMIT = "limit"
    CHALLENGE = "challenge"
    BLOCK = "block"
    RESPOND = "respond"
    """The guard answers itself (challenge verification, its own assets)."""


class ClientClass(IntEnum):
    """Priority classes; a higher value is served first and shed last."""

    SUSPECT = 0
    UNKNOWN = 1
    VERIFIED = 2
    CUSTOMER = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Mode(StrEnum):
    NORMAL = "normal"
    ELEVATED = "elevated"
    UNDER_ATTACK = "under_attack"


@dataclass(frozen=True, slots=True, init=False)
class RequestFacts:
    """What is known of a request before its body: enough to decide on.

    Built for every request. The ``__init__`` is written out (not generated)
    so that mypyc compiles it: compiled, it stores straight into the native
    object's fields (~0.3 µs; a generated frozen ``__init__`` is Python code
    calling ``object.__setattr__`` per field, ~6 µs under mypyc); the class is
    still frozen for everyone else. Pure Python, the frozen class's own
    assignments would raise, so :func:`shieldwall.fastinit.fast_init` replaces
    it at import (below)."""

    client: str
    """Client address after trusted-proxy resolution of X-Forwarded-For."""
    method: str
    path: str
    query: str
    host: str = ""
    user_agent: str = ""
    referer: str = ""
    cookie: str = ""
    """The raw Cookie header (all Cookie headers joined with '; ')."""
    tls: bool = False

    def __init__(self, client: str, method: str, path: str, query: str, host: str = "",
                 user_agent: str = "", referer: str = "", cookie: str = "",
                 tls: bool = False) -> None:
        self.client = client  # type: ignore[misc]
        self.method = method  # type: ignore[misc]
        self.path = path  # type: ignore[misc]
        self.query = query  # type: ignore[misc]
        self.host = host  # type: ignore[misc]
        self.user_agent = user_agent  # type: ignore[misc]
        self.referer = referer  # type: ignore[misc]
        self.cookie = cookie  # type: ignore[misc]
        self.tls = tls  # type: ignore[misc]


@dataclass(frozen=True, slots=True, init=False)
class Decision:
    """The guard's answer. Built per challenge page (and per shadowed rule);
    its ``__init__`` is written out for mypyc, as :class:`RequestFacts`'."""

    action: Action
    cls: ClientClass = ClientClass.UNKNOWN
    retry_after: float = 0.0
    reason: str = ""
    shadow: bool = False
    """The rule that fired is in shadow mode: log ``action`` but let the request through."""
    response: bytes | None = None
    """For every action but ALLOW: the complete HTTP/1.1 response the proxy sends as is."""
    close: bool = False
    """Close the connection after ``response`` (block, and anything the guard distrusts)."""
    add_response_headers: tuple[tuple[bytes, bytes], ...] = field(default=())
    """For ALLOW: headers the proxy appends to the upstream's response (e.g. Set-Cookie)."""
    priority: int = 0
    """Rank within ``cls`` for admission (1: a customer in checkout, shed last of all).
    The proxy passes it on: ``admission.acquire(backend, cls, priority=decision.priority)``."""
    session: bool = False
    """The request carried a valid shield session cookie (for RequestEvent.session)."""

    def __init__(self, action: Action, cls: ClientClass = ClientClass.UNKNOWN,
                 retry_after: float = 0.0, reason: str = "", shadow: bool = False,
                 response: bytes | None = None, close: bool = False,
                 add_response_headers: tuple[tuple[bytes, bytes], ...] = (),
                 priority: int = 0, session: bool = False) -> None:
        self.action = action  # type: ignore[misc]
        self.cls = cls  # type: ignore[misc]
        self.retry_after = retry_after  # type: ignore[misc]
        self.reason = reason  # type: ignore[misc]
        self.shadow = shadow  # type: ignore[misc]
        self.response = response  # type: ignore[misc]
        self.close = close  # type: ignore[misc]
        self.add_response_headers = add_response_headers  # type: ignore[misc]
        self.priority = priority  # type: ignore[misc]
        self.session = session  # type: ignore[misc]

    @property
    def enforced(self) -> bool:
        """True when the proxy must answer with ``response`` instead of forwarding."""
        return self.action is not Action.ALLOW and not self.shadow


class Gate(Protocol):
    """What the proxy calls. Implementations must not block or await: the request
    path never waits on Redis or the detector."""

    def decide(self, facts: RequestFacts) -> Decision: ...

    def observe_response(
        self, facts: RequestFacts, decision: Decision, status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> tuple[tuple[bytes, bytes], ...]:
        """Called with the upstream's status and headers before they are sent on;
        returns extra headers to append (session cookie, customer marking)."""
        ...


if __file__.endswith(".py"):
    # Pure Python: the written-out __init__ would trip the frozen __setattr__;
    # fastinit's stores through the slots instead (compiled, mypyc's own is used).
    fast_init(RequestFacts)
    fast_init(Decision)


ALLOW_ALL = Decision(Action.ALLOW, ClientClass.UNKNOWN, reason="no guard")


class OpenGate:
    """The gate of a shield with no guard configured: lets everything through."""

    def decide(self, facts: RequestFacts) -> Decision:
        return ALLOW_ALL

    def observe_response(
        self, facts: RequestFacts, decision: Decision, status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> tuple[tuple[bytes, bytes], ...]:
        return ()


class Admission(Protocol):
    """Admission control in front of each backend (the guard's priority queue).

    The proxy calls ``acquire`` before sending a request to ``backend`` and
    ``release`` when the response is complete (or failed)."""

    def try_acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> bool:
        """The uncontended case without an await: True when a slot was free and
        nobody is waiting (the request is admitted, ``release`` follows as
        usual); False means "ask ``acquire``", which may queue or shed. Lets the
        proxy forward most requests without creating a task for each."""
        ...

    async def acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> float | None:
        """Wait for a slot (``priority`` orders requests within a class: a
        checkout outranks browsing); return None when admitted, or the Retry-After
        seconds when the request is shed (the proxy answers 503)."""
        ...

    def release(self, backend: str, latency: float, ok: bool) -> None: ...


class OpenAdmission:
    """No admission control: every request goes straight to the pool."""

    def try_acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> bool:
        return True

    async def acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> float | None:
        return None

    def release(self, backend: str, latency: float, ok: bool) -> None:
        return None
