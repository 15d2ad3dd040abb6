"""Which backend gets the next request, and which are fit to get any: pure.

Weighted least-outstanding-requests over the backends that are up. A backend
is taken out by the active health check (``unhealthy_threshold`` failed probes
in a row) or passively (``max_fails`` failed requests in a row); a passively
ejected backend gets one trial request after ``eject_time`` (half-open): a
success brings it back, a failure ejects it again. No IO, clock injected.

A health check must never be able to close the shop: a wrong health path, or
a check that fails while the backends answer real requests, would otherwise
take every backend out and answer 503 to everyone. So, like Envoy's panic
threshold, when fewer than ``panic_threshold`` of the backends pass the
active check the balancer routes to all of them (passive ejection still
applies: a backend that fails real requests stays out) until the checks
pass again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class BackendState:
    __slots__ = (
        "consecutive_fails", "ejected_until", "host", "key", "outstanding", "port",
        "probe_fails", "probe_oks", "probing", "trial", "up_by_health", "weight",
    )

    def __init__(self, key: str, host: str, port: int, weight: int = 1) -> None:
        self.key = key
        self.host = host
        self.port = port
        self.weight = weight
        self.outstanding = 0
        self.consecutive_fails = 0
        self.ejected_until = 0.0
        """Passive ejection: no traffic before this time; 0 when not ejected."""
        self.trial = False
        """Half-open: one trial request is in flight."""
        self.up_by_health = True
        self.probe_oks = 0
        self.probe_fails = 0
        self.probing = False

    @property
    def healthy(self) -> bool:
        return self.up_by_health and self.ejected_until == 0.0


class Balancer:
    def __init__(self, clock: Callable[[], float], max_fails: int = 3, eject_time: float = 10.0,
                 healthy_threshold: int = 2, unhealthy_threshold: int = 3,
                 panic_threshold: float = 0.5) -> None:
        self.clock = clock
        self.max_fails = max_fails
        self.eject_time = eject_time
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.panic_threshold = panic_threshold
        """Share of backends that must pass the active check; under it, all are used (0: never)."""
        self.backends: list[BackendState] = []
        self.panic = False
        """Too few backends pass the active check: route to all of them."""
        self._rr = 0

    def update_panic(self) -> bool:
        """Recompute :attr:`panic`; True when it changed (say so in the log)."""
        n = len(self.backends)
        up = sum(1 for b in self.backends if b.up_by_health)
        panic = n > 0 and up < self.panic_threshold * n
        changed = panic != self.panic
        self.panic = panic
        return changed

    @property
    def passing(self) -> int:
        """Backends that pass the active health check."""
        return sum(1 for b in self.backends if b.up_by_health)

    def set_backends(self, wanted: Iterable[tuple[str, str, int, int]]) -> list[BackendState]:
        """Replace the backend list, keeping the state of backends that stay
        (a reload must not forget that a backend is down). Returns removed
        ones; then call :meth:`update_panic`."""
        old = {b.key: b for b in self.backends}
        new: list[BackendState] = []
        for key, host, port, weight in wanted:
            b = old.pop(key, None)
            if b is None:
                b = BackendState(key, host, port, weight)
            b.weight = weight
            new.append(b)
        self.backends = new
        return list(old.values())

    def pick(self, exclude: BackendState | None = None) -> BackendState | None:
        """The usable backend with the fewest outstanding requests per weight."""
        best: BackendState | None = None
        best_score = 0.0
        now = -1.0
        n = len(self.backends)
        self._rr = (self._rr + 1) % n if n else 0
        panic = self.panic
        for i in range(n):
            b = self.backends[(self._rr + i) % n]
            if b is exclude or not (b.up_by_health or panic):
                continue
            if b.ejected_until:
                if now < 0:
                    now = self.clock()
                if b.trial or now < b.ejected_until:
                    continue
            score = (b.outstanding + 1) / b.weight
            if best is None or score < best_score:
                best, best_score = b, score
        if best is not None and best.ejected_until:
            best.trial = True
        return best

    def succeeded(self, b: BackendState) -> None:
        b.consecutive_fails = 0
        if b.ejected_until:
            b.ejected_until = 0.0
            b.trial = False

    def failed(self, b: BackendState) -> None:
        b.consecutive_fails += 1
        if b.trial or b.consecutive_fails >= self.max_fails:
            b.ejected_until = self.clock() + self.eject_time
            b.trial = False

    def probe_result(self, b: BackendState, ok: bool) -> bool:
        """Record an active health probe; returns True when the state flipped
        (then call :meth:`update_panic`)."""
        if ok:
            b.probe_fails = 0
            b.probe_oks += 1
            if not b.up_by_health and b.probe_oks >= self.healthy_threshold:
                b.up_by_health = True
                b.consecutive_fails = 0
                b.ejected_until = 0.0
                b.trial = False
                return True
        else:
            b.probe_oks = 0
            b.probe_fails += 1
            if b.up_by_health and b.probe_fails >= self.unhealthy_threshold:
                b.up_by_health = False
                return True
        return False


def should_retry(method: str, has_body: bool, sent: bool, attempt: int, timed_out: bool) -> bool:
    """Whether a failed attempt may be tried once more on another backend.

    A request that never left (connect refused or timed out) is safe to send
    elsewhere whatever its method; one that was sent and then reset before any
    answer is retried only if it is idempotent and has no body; a response
    timeout is never retried (the backend may still be working on it)."""
    if attempt >= 2:
        return False
    if not sent:
        return True
    if timed_out:
        return False
    return not has_body and method in ("GET", "HEAD", "OPTIONS", "DELETE", "TRACE")
