"""N workers on one machine acting as one shield, without Redis.

The supervisor makes a private directory (mode 0700, removed on exit); every
worker k listens on ``worker-k.sock`` there, a unix socket served by the same
admin app as the public listener plus the parts' peer-only routes
(``/peer/...``, no token: only this user can reach the directory).

- Operator changes: worker 0's public admin listener applies every mutating
  authenticated route (POST mode/ban/unban/allow/unallow) locally, then
  forwards the identical request (same body, same bearer token) to every
  other worker's socket at once, and answers only when each has answered or
  failed. Failures are reported per worker in the response's ``workers``
  field; a dead or restarting worker costs at most ``PEER_TIMEOUT``.
- A restarted worker binds its socket first (forwarded requests queue in the
  kernel), pulls a snapshot from a live peer (worker 0 first), applies it,
  and only then serves the socket: a change made meanwhile is either in the
  snapshot or applied after it.
- Periodic reports: at start and then every second each worker asks its
  parts for a report (the guard's detector verdict and new suspects) and
  posts it to every peer.
- ``GET /api/status`` on worker 0 adds every worker's view (``workers``) and
  sums the counters; ``GET /api/verdict`` answers with the most alarming
  worker's verdict and lists them all.

Nothing here runs on the request path.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from shieldwall.admin_api import AdminRequest, AdminResponse

PEER_TIMEOUT = 2.0
"""Seconds a worker-to-worker call may take before that worker counts as failed."""
READ_TIMEOUT = 0.5
"""The same for gathering views (status, verdict): the monitor asks with a 1 s timeout."""
_MODES = ("normal", "elevated", "under_attack")
MAX_PEER_REPLY = 4 * 1024 * 1024
UNCHANGED = (400, 401, 405)
"""Local answers that mean nothing was applied: nothing to forward."""


def socket_path(peer_dir: Path, index: int) -> Path:
    return peer_dir / f"worker-{index}.sock"


def bind_private(path: Path) -> socket.socket:
    """Bind and listen (connections queue until the worker serves it); a
    stale file left by a killed predecessor is replaced."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True, slots=True)
class PeerReply:
    worker: int
    status: int
    """HTTP status, 0 when the worker could not be reached or did not answer."""
    body: Any
    error: str = ""

    @property
    def applied(self) -> bool:
        return 0 < self.status < 500 and self.status not in UNCHANGED


class Peers:
    """Client side: calls to the other workers' private sockets."""

    def __init__(self, peer_dir: Path, index: int, count: int,
                 timeout: float = PEER_TIMEOUT) -> None:
        self.dir = peer_dir
        self.index = index
        self.count = count
        self.timeout = timeout

    @property
    def others(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]

    async def call(self, worker: int, method: str, path: str, body: bytes = b"",
                   authorization: str = "", timeout: float | None = None) -> PeerReply:
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                reader, writer = await asyncio.open_unix_connection(
                    str(socket_path(self.dir, worker)))
                try:
                    head = (f"{method} {path} HTTP/1.1\r\nHost: worker-{worker}\r\n"
                            f"Content-Length: {len(body)}\r\nConnection: close\r\n")
                    if authorization:
                        head += f"Authorization: {authorization}\r\n"
                    writer.write(head.encode("latin-1") + b"\r\n" + body)
                    raw = await reader.read(MAX_PEER_REPLY)
                    while True:
                        more = await reader.read(MAX_PEER_REPLY)
                        if not more:
                            break
                        raw += more
                finally:
                    writer.close()
        except (OSError, TimeoutError, UnicodeError) as exc:
            reason = "no answer in time" if isinstance(exc, TimeoutError) else \
                f"{type(exc).__name__}: {exc}"
            return PeerReply(worker, 0, None, reason)
        head_raw, _, payload = raw.partition(b"\r\n\r\n")
        parts = head_raw.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return PeerReply(worker, 0, None, "malformed answer")
        try:
            data = json.loads(payload) if payload.strip() else None
        except ValueError:
            data = None
        return PeerReply(worker, int(parts[1]), data)

    async def broadcast(self, method: str, path: str, body: bytes = b"",
                        authorization: str = "", timeout: float | None = None
                        ) -> list[PeerReply]:
        return list(await asyncio.gather(
            *(self.call(i, method, path, body, authorization, timeout) for i in self.others)))

    async def pull(self, path: str) -> Any:
        """The first live peer's JSON answer to ``GET path`` (worker 0 first),
        or None when no peer answers (then this worker starts from its config)."""
        for i in self.others:
            reply = await self.call(i, "GET", path)
            if reply.status == 200:
                return reply.body
        return None


def _target(req: AdminRequest) -> str:
    return req.path + ("?" + urlencode(req.query) if req.query else "")


class FanOut:
    """Worker 0's public admin app hands every authenticated route's answer
    here (see AdminApp.fanout): mutations go to every worker, status gathers
    every worker's view."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    async def __call__(self, req: AdminRequest, authorization: str,
                       local: AdminResponse) -> AdminResponse:
        if req.method in ("GET", "HEAD"):
            if req.path == "/api/status" and local.status == 200:
                return await self._status(req, authorization, local)
            if req.path == "/api/verdict" and local.status == 200:
                return await self._verdict(req, authorization, local)
            return local
        if local.status in UNCHANGED or local.status >= 500:
            return local
        replies = await self.peers.broadcast(req.method, _target(req), req.body, authorization)
        body = _json_object(local)
        if body is None:
            return local
        status = local.status
        if status == 404 and any(200 <= r.status < 300 for r in replies):
            # e.g. unban: this worker had no such entry but another had it
            status = 200
            if "found" in body:
                body["found"] = True
        failed = [{"worker": r.worker, "status": r.status,
                   "error": r.error or _error_of(r.body)} for r in replies if not r.applied]
        body["workers"] = {"total": self.peers.count,
                           "applied": 1 + sum(1 for r in replies if r.applied),
                           "failed": failed}
        return AdminResponse.of_json(body, status)

    async def _status(self, req: AdminRequest, authorization: str,
                      local: AdminResponse) -> AdminResponse:
        body = _json_object(local)
        if body is None:
            return local
        replies = await self.peers.broadcast("GET", _target(req), b"", authorization,
                                             READ_TIMEOUT)
        views: list[dict[str, Any]] = [dict(_view(body), worker=self.peers.index)]
        counters: dict[str, float] = dict(body.get("counters") or {})
        failed = []
        for r in replies:
            if r.status != 200 or not isinstance(r.body, dict):
                failed.append({"worker": r.worker, "status": r.status,
                               "error": r.error or _error_of(r.body)})
                continue
            views.append(dict(_view(r.body), worker=r.worker))
            for k, v in (r.body.get("counters") or {}).items():
                if isinstance(v, int | float):
                    counters[k] = counters.get(k, 0) + v
        keys = ("mode", "pinned", "bans", "allows")
        agree = len({tuple(v.get(k) for k in keys) for v in views}) == 1
        body["counters"] = dict(sorted(counters.items()))
        body["workers"] = {"total": self.peers.count, "answered": len(views),
                           "agree": agree and not failed, "failed": failed,
                           "views": sorted(views, key=lambda v: int(v["worker"])),
                           "note": "counters are summed over the workers that answered; "
                                   f"the rest is worker {self.peers.index}'s view"}
        return AdminResponse.of_json(body, local.status)


    async def _verdict(self, req: AdminRequest, authorization: str,
                       local: AdminResponse) -> AdminResponse:
        """Each worker's detector sees its share of the connections: answer with
        the most alarming verdict (mode first, then not-normal, then confidence)
        and list every worker's in ``workers``."""
        body = _json_object(local)
        if body is None:
            return local
        replies = await self.peers.broadcast("GET", _target(req), b"", authorization,
                                             READ_TIMEOUT)
        answers = [(self.peers.index, body)] + [
            (r.worker, r.body) for r in replies if r.status == 200 and isinstance(r.body, dict)]

        def alarm(item: tuple[int, dict[str, Any]]) -> tuple[int, bool, float]:
            v = item[1]
            mode = v.get("mode")
            conf = v.get("confidence")
            return (_MODES.index(mode) if mode in _MODES else 0, v.get("verdict") != "normal",
                    float(conf) if isinstance(conf, int | float) else 0.0)

        worker, chosen = max(answers, key=alarm)
        out = dict(chosen)
        out["workers"] = {
            "total": self.peers.count, "answered": len(answers), "chosen": worker,
            "views": sorted(({"worker": w, "verdict": v.get("verdict"), "kind": v.get("kind"),
                              "mode": v.get("mode"), "confidence": v.get("confidence")}
                             for w, v in answers), key=lambda d: int(d["worker"])),
            "failed": [{"worker": r.worker, "status": r.status,
                        "error": r.error or _error_of(r.body)}
                       for r in replies if r.status != 200 or not isinstance(r.body, dict)]}
        return AdminResponse.of_json(out, local.status)


def _view(status: dict[str, Any]) -> dict[str, Any]:
    return {k: status.get(k)
            for k in ("mode", "pinned", "detector_mode", "bans", "allows", "counters", "pid")}


def _error_of(body: Any) -> str:
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return "" if body is None else json.dumps(body)[:200]


PeerReport = Callable[[], tuple[str, bytes] | None]
"""A part's periodic report: (path, body) to post to every peer, or None."""
PeerRestore = Callable[[Any], None]


def report_loop(peers: Peers, reports: list[PeerReport], every: float = 1.0,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
                ) -> Coroutine[Any, Any, None]:
    """Post each part's report to every peer now, then every ``every``
    seconds (the unreachable ones are skipped until they are back). The first
    round's reports are taken synchronously, when the loop is created, so a
    part knows from the start that it has peers."""
    first = [report() for report in reports]

    async def run() -> None:
        pending = first
        while True:
            for got in pending:
                if got is not None:
                    path, body = got
                    await peers.broadcast("POST", path, body)
            await sleep(every)
            pending = [report() for report in reports]

    return run()


def _json_object(resp: AdminResponse) -> dict[str, Any] | None:
    """This worker's answer as a JSON object to merge the others into; None
    when it is not one (an error page is passed on as it is)."""
    try:
        body = json.loads(resp.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
