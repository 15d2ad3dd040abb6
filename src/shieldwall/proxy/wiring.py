"""Where the parts plug into the data path: the one place to wire them.

Given the loaded config, :func:`wire` returns what the proxy runs with: the
gate (guard), the admission control, the row feed the detector and the
console read (shieldwall.rowfeed), any other event sinks, extra admin
routes, extra metrics and background services. The guard's and the
detector's runtimes are added here, in a few lines each, and nowhere else.

The detector feeds the guard: its mode changes go to ``GuardRuntime.set_mode``
(ignored while an operator has pinned the mode) and its per-client suspicion
to ``GuardRuntime.mark_suspect``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shieldwall.admin_api import AdminRoute
from shieldwall.config import Config
from shieldwall.detect.events import EventSink
from shieldwall.guard.decision import Admission, Gate, Mode, OpenAdmission, OpenGate
from shieldwall.rowfeed import RowFeed

if TYPE_CHECKING:
    from shieldwall.detect.windows import Row
    from shieldwall.guard.runtime import GuardRuntime


@dataclass
class Service:
    """A background service run next to the proxy (state sync, detector tick)."""

    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


@dataclass
class PeerHooks:
    """How a part keeps N workers on one machine in step (shieldwall.proxy.fanout)."""

    routes: list[AdminRoute]
    """Served on the workers' private sockets only (never on the public listener)."""
    snapshot_path: str
    """A restarted worker GETs this from a live peer and passes the JSON to ``restore``."""
    restore: Callable[[Any], None]
    report: Callable[[], tuple[str, bytes] | None]
    """Called every second: a (path, body) to POST to every peer, or None."""


@dataclass
class Wiring:
    gate: Gate = field(default_factory=OpenGate)
    admission: Admission = field(default_factory=OpenAdmission)
    sinks: list[EventSink] = field(default_factory=list)
    row_sinks: list[Callable[[Row], None]] = field(default_factory=list)
    """Fed the detector's row per finished request instead of an event object
    (DetectRuntime.record): the same figures, none of the per-request object."""
    feed: RowFeed | None = None
    """The worker's one buffer of finished requests (shieldwall.rowfeed): the
    proxy appends a row per request, the detector and the console read it at
    their ticks."""
    routes: list[AdminRoute] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    metrics: list[Callable[[], str]] = field(default_factory=list)
    """Extra Prometheus text appended to /metrics (the parts' own gauges)."""
    peers: list[PeerHooks] = field(default_factory=list)


def wire(config: Config, secret: bytes | None = None) -> Wiring:
    """The parts this config asks for: the guard and the detector, each
    unless its section says ``enabled = false``. ``secret``: the guard's
    signing key when the supervisor made one for all its workers (so a
    session or pass signed by one worker holds on the others)."""
    from shieldwall.console import Recorder
    from shieldwall.detect.runtime import DetectRuntime
    from shieldwall.guard.runtime import GuardRuntime

    wiring = Wiring()
    if config.guard.enabled or config.detect.enabled:
        wiring.feed = RowFeed()
    guard: GuardRuntime | None = None
    if config.guard.enabled:
        guard = GuardRuntime.from_settings(config.guard)
        if secret is not None:
            guard.gate.set_secret(secret)
        wiring.gate = guard.gate
        wiring.admission = guard.admission
        wiring.routes += guard.admin_routes
        wiring.services.append(Service("guard", guard.start, guard.stop))
        wiring.metrics.append(guard.metrics_text)
        wiring.peers.append(PeerHooks(guard.peer_routes, "/peer/guard/snapshot",
                                      guard.restore, guard.peer_report))
    if config.detect.enabled:
        detect = DetectRuntime.from_settings(config.detect)
        if guard is not None:
            detect.on_mode = _mode_setter(guard)
            detect.on_suspect = guard.mark_suspect
        assert wiring.feed is not None
        detect.attach(wiring.feed)
        wiring.routes += detect.admin_routes
        wiring.services.append(Service("detect", detect.start, detect.stop))
        if config.guard.redis.url:
            # one verdict for every worker of every node (shieldwall.detect.cluster)
            from shieldwall.detect.cluster import ClusterJudge

            judge = ClusterJudge(config.detect, config.guard.redis.url, config.guard.redis.prefix,
                                 detect.on_mode, detect.on_suspect)
            detect.on_mode = judge.local
            detect.on_suspect = judge.local_suspect
            detect.cluster = judge
            wiring.services.append(Service("cluster", judge.start, judge.stop))
    if config.guard.enabled or config.detect.enabled:
        # the console's per-worker view (shieldwall.console): one more reader of
        # the rows the proxy writes anyway
        rec = Recorder(feed=wiring.feed)
        wiring.routes += rec.admin_routes
        wiring.services.append(Service("console", rec.start, rec.stop))
    return wiring


def _mode_setter(guard: GuardRuntime) -> Callable[[Mode, str], None]:
    def set_mode(mode: Mode, source: str) -> None:
        guard.set_mode(mode, source)

    return set_mode
