"""detect: attack, flash crowd or broken backend -- live and after the fact.

Where to start reading (docs/DETECT.md has the whole story):

- ``events``    RequestEvent / Outcome / EventSink: the contract with the proxy
- ``windows``   requests -> 1 s windows, by event time (both feeds meet here)
- ``features``  windows -> Features, with 10 s / 60 s views and a learned baseline
- ``rules``     Features -> a verdict with evidence in words (pure)
- ``detector``  hysteresis, incidents, per-client suspicion, the guard's mode
- ``runtime``   DetectRuntime: the live feed inside the shield
- ``readers``, ``analyze``, ``report``: the offline feed (``shieldwall analyze``)
- ``synth``, ``evaluate``: labelled synthetic traffic and scoring
- ``settings``  the ``[detect]`` config section

Nothing is imported here until it is asked for (PEP 562): ``shieldwall analyze``
starts its parsing process from ``readers`` before anything else, and the
settings' pydantic model (a tenth of a second to import and build) would
otherwise be built first, in both processes' start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shieldwall.detect.events import EventSink, Outcome, RequestEvent
    from shieldwall.detect.settings import DetectSettings

__all__ = ["DetectSettings", "EventSink", "Outcome", "RequestEvent"]

_HOME = {"DetectSettings": "settings", "EventSink": "events", "Outcome": "events",
         "RequestEvent": "events"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
