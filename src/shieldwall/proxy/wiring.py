"""Where the parts plug into the data path: the one place to wire them.

Given the loaded config, :func:`wire` returns what the proxy runs with: the
gate (guard), the admission control, the event sinks (detect), extra admin
routes and background services. The guard's and the detector's runtimes are
added here, in a few lines each, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shieldwall.admin_api import AdminRoute
from shieldwall.config import Config
from shieldwall.detect.events import EventSink
from shieldwall.guard.decision import Admission, Gate, OpenAdmission, OpenGate


@dataclass
class Service:
    """A background service run next to the proxy (state sync, detector tick)."""

    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


@dataclass
class Wiring:
    gate: Gate = field(default_factory=OpenGate)
    admission: Admission = field(default_factory=OpenAdmission)
    sinks: list[EventSink] = field(default_factory=list)
    routes: list[AdminRoute] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)


def wire(config: Config) -> Wiring:
    """The parts this config asks for. Today: no guard, no detector."""
    del config  # the guard and detect runtimes will read their sections here
    return Wiring()
