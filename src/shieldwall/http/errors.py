"""One tree of errors for the data path, mapped to a status in one place.

::

    ShieldError
    ├── ClientError     the client broke the protocol or a limit (4xx hint);
    │                   answered with prebuilt bytes and ``Connection: close``
    └── UpstreamError   no backend could answer: 502 (refused/reset/bad reply),
                        503 (none available), 504 (timeout)

``ConfigError`` (shieldwall.config) is the third branch the CLI maps to exit 2.
Every over-limit answer is built once at import: refusing costs a write.
"""

from __future__ import annotations

from http import HTTPStatus

from shieldwall.detect.events import Outcome


class ShieldError(Exception):
    status: int = 500


class ClientError(ShieldError):
    """The client sent something we refuse to frame (or waited too long)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class UpstreamError(ShieldError):
    def __init__(self, status: int, outcome: Outcome, reason: str, sent: bool,
                 timed_out: bool) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.outcome = outcome
        self.reason = reason
        self.sent = sent
        """Request bytes may have reached the backend (False: safe to send elsewhere)."""
        self.timed_out = timed_out


# What each way of failing at a backend means, in one table (kinds are
# shieldwall.proxy.upstream's constants).
UPSTREAM_FAILURES: dict[int, UpstreamError] = {
    1: UpstreamError(502, Outcome.REFUSED, "connect refused", sent=False, timed_out=False),
    2: UpstreamError(504, Outcome.TIMEOUT, "connect timed out", sent=False, timed_out=False),
    3: UpstreamError(502, Outcome.REFUSED, "closed or reset before answering", sent=True,
                     timed_out=False),
    4: UpstreamError(504, Outcome.TIMEOUT, "no answer in time", sent=True, timed_out=True),
    5: UpstreamError(502, Outcome.REFUSED, "invalid response", sent=True, timed_out=False),
}


def build_response(status: int, body: bytes = b"", close: bool = True,
                   extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    phrase = HTTPStatus(status).phrase.encode()
    if not body:
        body = b"%d %s\n" % (status, phrase)
    head = [b"HTTP/1.1 %d %s\r\n" % (status, phrase),
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body)]
    for name, value in extra:
        head.append(name + b": " + value + b"\r\n")
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + body


_PREBUILT = {s: build_response(s) for s in (400, 405, 408, 413, 414, 431, 501, 502, 503, 504)}
_PREBUILT_KEEP = {s: build_response(s, close=False) for s in (502, 503, 504)}


def error_response(status: int, close: bool = True) -> bytes:
    """The complete response for an error status (prebuilt for the common ones)."""
    table = _PREBUILT if close else _PREBUILT_KEEP
    got = table.get(status)
    return got if got is not None else build_response(status, close=close)


_RETRY_AFTER: dict[int, bytes] = {}


def shed_response(retry_after: float) -> bytes:
    """503 with Retry-After for admission shedding, cached per whole second."""
    secs = max(1, int(retry_after + 0.999))
    got = _RETRY_AFTER.get(secs)
    if got is None:
        got = build_response(503, b"overloaded, retry later\n", close=False,
                             extra=((b"Retry-After", str(secs).encode()),))
        if len(_RETRY_AFTER) < 512:
            _RETRY_AFTER[secs] = got
    return got
