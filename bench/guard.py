"""How much a decision costs, and how much cheaper refusing is than serving.

Prints one JSON document:

- ``core``: microseconds per ``Gate.decide`` for the pure core, single
  thread, on the allow path (a returning browser with a session cookie, a
  fresh-bucket unknown client), and on the reject paths (banned address,
  over the limit, challenge page built per request), plus
  ``observe_response`` for a returning browser;
- ``proxy``: when the proxy's ``run_shield`` helper exists, requests/s of
  rejected (429 from the guard) against proxied requests (to a tiny upstream)
  through the real proxy in the same run, and their ratio; otherwise the
  reason it was skipped.

Goal (issue 3): a decision under 10 µs; a rejection costs at most a fifth of a
proxied request.

    .venv/bin/python bench/guard.py [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from shieldwall.guard.decision import RequestFacts
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return round(best, 3)


def core(n: int) -> dict[str, Any]:
    now = [1_700_000_000.0]

    def clock() -> float:
        return now[0]

    rt = GuardRuntime.from_settings(GuardSettings.model_validate({
        "limits": {"default_route": {"name": "page", "rate": 1e9, "burst": 1e9}}}),
        clock=clock)
    gate = rt.gate
    first = RequestFacts("198.51.100.7", "GET", "/product/42", "", cookie="")
    d = gate.decide(first)
    (_, set_cookie), = gate.observe_response(first, d, 200, [])
    session = set_cookie.decode().split(";", 1)[0]
    browser = RequestFacts("198.51.100.7", "GET", "/product/42", "",
                           user_agent="Mozilla/5.0", cookie=f"theme=dark; {session}")
    plain = RequestFacts("198.51.100.8", "GET", "/product/42", "")
    rt.ban("203.0.113.0/24", ttl=3600)
    banned = RequestFacts("203.0.113.9", "GET", "/", "")
    limited_rt = GuardRuntime.from_settings(GuardSettings.model_validate({
        "limits": {"default_route": {"name": "page", "rate": 0.001, "burst": 1}}}), clock=clock)
    limited = RequestFacts("192.0.2.1", "GET", "/", "")
    limited_rt.gate.decide(limited)
    attack_rt = GuardRuntime.from_settings(GuardSettings.model_validate({
        "mode": "under_attack",
        "limits": {"default_route": {"name": "page", "rate": 1e9, "burst": 1e9}}}), clock=clock)
    challenged = RequestFacts("192.0.2.2", "GET", "/shop", "item=7")
    assert gate.decide(browser).action.value == "allow"
    assert gate.decide(banned).action.value == "block"
    assert limited_rt.gate.decide(limited).action.value == "limit"
    assert attack_rt.gate.decide(challenged).action.value == "challenge"
    dec = gate.decide(browser)
    return {
        "allow_returning_browser_us": _per_call_us(lambda: gate.decide(browser), n),
        "allow_unknown_us": _per_call_us(lambda: gate.decide(plain), n),
        "reject_banned_us": _per_call_us(lambda: gate.decide(banned), n),
        "reject_limited_us": _per_call_us(lambda: limited_rt.gate.decide(limited), n),
        "challenge_page_us": _per_call_us(lambda: attack_rt.gate.decide(challenged), n // 10),
        "observe_response_us": _per_call_us(
            lambda: gate.observe_response(browser, dec, 200, []), n),
        "goal_us": 10.0,
    }


def proxy() -> dict[str, Any]:
    try:
        from shieldwall.proxy import run_shield  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return {"skipped": "the proxy's run_shield helper is not available yet; "
                           "rejected-vs-proxied requests/s not measured"}
    return {"skipped": "run_shield exists but this bench does not drive it yet"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="decisions per measurement")
    args = ap.parse_args()
    out = {
        "bench": "guard",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "core": core(args.n),
        "proxy": proxy(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
