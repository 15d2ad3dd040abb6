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

Only light modules are imported here, so ``shieldwall.config`` can import the
settings without pulling in the detector.
"""

from shieldwall.detect.events import EventSink, Outcome, RequestEvent
from shieldwall.detect.settings import DetectSettings

__all__ = ["DetectSettings", "EventSink", "Outcome", "RequestEvent"]
