"""An incident's networks are counted per source while it runs and mapped to networks
when asked (``Incident.settle``, from ``top_prefixes``): the counters must come out
exactly as if every second had been added to them in turn -- the same counts, the
same order (``most_common`` breaks ties by it) -- whether they are asked for every
second (the live admin API shows the open incident) or once at the end, and the
HyperLogLog of its sources (new sources only, second after second) the same."""

from __future__ import annotations

from typing import Any

from shieldwall.detect.detector import Detector, Incident
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.synth import generate, make_scenario
from shieldwall.detect.windows import Window, WindowBuilder


def _windows() -> list[Window]:
    sc = make_scenario(3, ["flood", "flash_crowd", "randomized", "slow"], family="train")
    s = DetectSettings()
    b = WindowBuilder(lateness=s.offline_lateness, **Detector(s).make_builder_args())
    for ev in generate(sc):
        b.add_event(ev)
    return b.flush()


def _record(inc: Incident) -> dict[str, Any]:
    inc.settle()
    return {"prefixes": list(inc.prefixes.items()), "networks": list(inc.networks.items()),
            "hll": bytes(inc.sources.reg), "top": inc.top_prefixes(), "json": inc.as_json()}


def test_networks_counted_once_at_the_end_equal_counted_every_second() -> None:
    windows = _windows()
    s = DetectSettings()
    every, once = Detector(s, score_clients=False), Detector(s, score_clients=False)
    a: list[Incident] = []
    b: list[Incident] = []
    opened = 0
    for w in windows:
        ra = every.step(w)
        rb = once.step(w)
        assert ra.features == rb.features and ra.state == rb.state
        if every.current is not None:
            every.current.settle()  # as the live feed's admin API does, any second
            assert not every.current._unsettled
            opened += 1
        a += ra.closed
        b += rb.closed
    a += every.finish()
    b += once.finish()
    assert opened > 100 and len(a) == len(b) >= 3
    assert any(inc.verdict == "ddos" for inc in a)
    for x, y in zip(a, b, strict=True):
        assert _record(x) == _record(y)
        assert x.sources.count() > 0 and x.prefixes
