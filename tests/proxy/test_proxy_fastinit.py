"""fast_init: the per-request records keep every dataclass behaviour with the cheaper __init__."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from shieldwall.detect.events import Outcome, RequestEvent
from shieldwall.fastinit import fast_init
from shieldwall.guard.decision import RequestFacts


@dataclass(frozen=True, slots=True)
class _Reference:
    a: int
    b: str
    c: float = 1.5
    d: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class _Fast:
    a: int
    b: str
    c: float = 1.5
    d: str = ""


def test_fast_init_builds_the_same_record_as_the_generated_init() -> None:
    for args, kw in (((1, "x"), {}), ((1, "x", 2.5), {"d": "y"}), ((), {"b": "x", "a": 1})):
        ref, fast = _Reference(*args, **kw), _Fast(*args, **kw)  # type: ignore[arg-type]
        assert dataclasses.astuple(ref) == dataclasses.astuple(fast)
        assert repr(fast) == repr(ref).replace("_Reference", "_Fast")
    assert _Fast(1, "x") == _Fast(1, "x") and hash(_Fast(1, "x")) == hash(_Fast(1, "x"))
    assert _Fast(1, "x") != _Fast(2, "x")


def test_fast_init_keeps_the_record_frozen_and_the_signature_strict() -> None:
    f = _Fast(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Fast(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Fast(1, "x", e=3)  # type: ignore[call-arg]


def test_fast_init_refuses_classes_it_cannot_build_faithfully() -> None:
    with pytest.raises(TypeError, match="not a frozen, slotted"):
        @fast_init
        @dataclass(slots=True)
        class _Mutable:
            a: int

    with pytest.raises(TypeError, match="needs the generated __init__"):
        @fast_init
        @dataclass(frozen=True, slots=True)
        class _Factory:
            a: list[int] = dataclasses.field(default_factory=list)


def test_the_request_records_use_it_and_keep_their_defaults() -> None:
    facts = RequestFacts("10.0.0.1", "GET", "/", "")
    assert (facts.host, facts.cookie, facts.tls) == ("", "", False)
    ev = RequestEvent(time=1.0, client="c", method="GET", path="/", query="", status=200,
                      bytes_sent=3, request_time=0.1)
    assert ev.outcome is Outcome.UNKNOWN and ev.upstream_time == -1.0 and ev.decision == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.status = 500  # type: ignore[misc]
