"""Runs one drill: starts the shop and the front, drives shoppers, attacks
and faults phase by phase, samples the shield's mode and verdict every
second, stops every process, and returns the report (a plain dict).

The report is counted from real requests: legitimate numbers from the
shoppers' own clients, attack numbers from the attackers' sends, what reached
the backends from the shop's counters (by true client address), and orders
from the shop's SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shieldwall.drill import counters as ctr
from shieldwall.drill import scenarios as sc
from shieldwall.drill.attackers import Attack, AttackSpec, Kind
from shieldwall.drill.fronts import Front, ShieldwallFront, ShopCluster, ShopShape, make_front
from shieldwall.drill.procs import Lab
from shieldwall.drill.shop import order_summary
from shieldwall.drill.shoppers import Clock, ShopperProfile, Shoppers
from shieldwall.drill.stats import AttackStats, LegitStats

SLOW_RAMP = 250.0
"""Slow attacks open this many new connections per second until they hold their count."""
END_GRACE_S = 8.0
"""After the last phase, sessions still running get this long to finish."""


@dataclass
class DrillOptions:
    scenario: str
    against: str = "none"
    duration: float = 60.0
    base_rate: float = 2.0
    """Shopper sessions per second in a calm phase."""
    out_dir: Path = Path("out/drill")
    backends: int = 2
    shape: ShopShape = field(default_factory=ShopShape)
    profile: ShopperProfile = field(default_factory=ShopperProfile)
    attack_sources: int | None = None
    """Override every assault's source count (None: the scenario's)."""
    seed: int | None = None
    grace: float = END_GRACE_S
    shield_toml: str = ""
    """shieldwall only: TOML appended to the config the lab writes (tuning sections)."""
    shield_mode: str | None = None
    """shieldwall only: pin the guard's mode (POST /api/mode) before the drill starts."""
    nodes: int = 1
    """shieldwall only: N shield nodes behind HAProxy on Redis (shieldwall.drill.cluster_front)."""


@dataclass
class Sample:
    t: int
    mode: str | None
    verdict: str | None
    kind: str | None
    reached_attack: int
    reached_shopper: int
    alive: list[bool]
    mode_since: float | None = None
    """Unix time the shield's mode in force last changed (GET /api/status), when it says."""
    evidence: tuple[str, ...] = ()
    """The detector's evidence in words for its verdict at this sample."""


@dataclass
class Live:
    """What the terminal shows while a drill runs (read by the CLI's renderer)."""

    phase: str = "start"
    t: float = 0.0
    duration: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    legit: LegitStats | None = None
    attack: AttackStats | None = None
    events: list[str] = field(default_factory=list)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _admin(front: Front, path: str) -> Any | None:
    if not isinstance(front, ShieldwallFront):
        return None
    return await asyncio.to_thread(front.admin_get, path)


def _mode_of(status: Any) -> str | None:
    if isinstance(status, dict):
        m = status.get("mode")
        if isinstance(m, str):
            return m
        if isinstance(m, dict) and isinstance(m.get("mode"), str):
            return str(m["mode"])
    return None


def _mode_since(status: Any) -> float | None:
    if isinstance(status, dict) and isinstance(status.get("mode_since"), int | float):
        return float(status["mode_since"])
    return None


def _evidence(verdict: Any) -> tuple[str, ...]:
    ev = verdict.get("evidence") if isinstance(verdict, dict) else None
    return tuple(str(e) for e in ev) if isinstance(ev, list) else ()


def _fields(verdict: Any) -> tuple[str | None, str | None, str | None]:
    if isinstance(verdict, dict):
        v = verdict.get("verdict")
        k = verdict.get("kind")
        m = verdict.get("mode")
        return (v if isinstance(v, str) else None, k if isinstance(k, str) else None,
                m if isinstance(m, str) else None)
    return None, None, None


async def run_drill(opts: DrillOptions, live: Live | None = None,
                    on_tick: Callable[[Live], None] | None = None) -> dict[str, Any]:
    _raise_nofile()
    plan = sc.timed(opts.scenario, opts.duration)
    work = opts.out_dir
    work.mkdir(parents=True, exist_ok=True)
    live = live or Live()
    live.duration = opts.duration
    legit, attack = LegitStats(), AttackStats()
    live.legit, live.attack = legit, attack
    # Each shopper's browser solves on its own CPU: two solver processes, so one
    # shopper's unlucky (long) proof of work does not hold up the next shopper's.
    solver: Executor | None = ProcessPoolExecutor(2) if opts.against == "shieldwall" else None
    # Bots that solve challenges (smart-bot) do it on their own machines: they get their
    # own solver process, so a hundred bots solving at once never queue a shopper's check.
    smart = any(a.kind is Kind.SMART_BOT for p, _, _ in plan for a in p.attacks)
    bot_solver: Executor | None = ProcessPoolExecutor(1) if solver is not None and smart else None
    lab = Lab(work)
    events: list[dict[str, Any]] = []
    started = time.time()
    try:
        cluster = ShopCluster(lab, work, opts.backends, opts.shape)
        cluster.start()
        front = make_front(opts.against, lab, cluster, work)
        if opts.nodes > 1:
            from shieldwall.drill.cluster_front import ClusterFront

            front = ClusterFront(lab, cluster, work, opts.nodes)
            attacked = next(((a, b) for p, a, b in plan if p.attacks), None)
            front.ban_at = None if attacked is None else attacked[0] + 0.7 * (attacked[1] - attacked[0])
        if isinstance(front, ShieldwallFront):
            front.extra_toml = opts.shield_toml
        front.start()
        if opts.shield_mode and isinstance(front, ShieldwallFront):
            answer = front.admin_post("/api/mode", {"mode": opts.shield_mode})
            if not isinstance(answer, dict) or answer.get("mode") != opts.shield_mode:
                raise RuntimeError(f"the shield did not accept mode {opts.shield_mode!r} (POST /api/mode: {answer})")
        targets = front.targets()
        clock = Clock()
        clock.phase = live.phase = plan[0][0].name
        wall0 = time.time()
        live.events = []

        def note(what: str) -> None:
            events.append({"t": round(clock.now(), 2), "event": what})
            live.events.append(f"{clock.now():5.1f}s {what}")

        current: dict[str, sc.Phase] = {"phase": plan[0][0]}
        shoppers = Shoppers(targets, legit, clock, lambda: opts.base_rate * current["phase"].shoppers_x,
                            opts.profile, solver, opts.seed, plan[0][0].access, front.edge)
        legit_rps = opts.base_rate * sc.REQUESTS_PER_SESSION

        async def fault(f: sc.Fault, delay: float) -> None:
            await asyncio.sleep(delay)
            try:
                await inject(f)
            except Exception as exc:  # the drill goes on; the report says what failed
                note(f"{f.action.value} backend{f.backend % opts.backends} FAILED: {exc}")

        async def inject(f: sc.Fault) -> None:
            act = sc.FaultAction(f.action)
            if act in (sc.FaultAction.KILL_NODE, sc.FaultAction.KILL_REDIS):
                note(await asyncio.to_thread(front.inject, act.value))
                return
            i = f.backend % opts.backends
            if act is sc.FaultAction.KILL:
                cluster.kill(i)
            elif act is sc.FaultAction.FREEZE:
                cluster.freeze(i)
            elif act is sc.FaultAction.THAW:
                cluster.thaw(i)
            elif act is sc.FaultAction.RESTART:
                await asyncio.to_thread(cluster.restart, i)
            elif act is sc.FaultAction.SLOW:
                await asyncio.to_thread(cluster.slow, i, f.ms)
            elif act is sc.FaultAction.UNSLOW:
                await asyncio.to_thread(cluster.slow, i, 0.0)
            pid = lab.procs[cluster.name(i)].pid
            extra = f", +{f.ms:g} ms per query" if act is sc.FaultAction.SLOW else ""
            note(f"{act.value} backend{i} (pid {pid}{extra})")

        async def phases() -> None:
            tasks: list[asyncio.Task[None]] = []
            for n, (ph, start, end) in enumerate(plan):
                await asyncio.sleep(max(0.0, start - clock.now()))
                current["phase"] = ph
                shoppers.access = ph.access
                clock.phase = live.phase = ph.name
                note(f"phase {ph.name}")
                for f in ph.faults:
                    tasks.append(asyncio.create_task(fault(f, f.at * (end - start))))
                for j, a in enumerate(ph.attacks):
                    sources = opts.attack_sources or a.sources
                    share = len(targets)
                    for k, (host, port) in enumerate(targets):
                        slow = a.kind in (Kind.SLOWLORIS, Kind.SLOW_POST)
                        rate = (SLOW_RAMP if slow else a.x * legit_rps) / share
                        spec = AttackSpec(a.kind, rate, max(1, sources // share),
                                          max(1, a.connections // share))
                        if a.interval_s is not None:
                            spec = replace(spec, interval_s=a.interval_s)
                        atk = Attack(spec, host, port, attack, clock.now, _constant(ph.name), bot_solver,
                                     None if opts.seed is None else opts.seed + n * 100 + j * 10 + k,
                                     source_offset=k * (sources // share) + j * 50000)
                        tasks.append(asyncio.create_task(atk.run(end)))
                    if a.kind is Kind.LOW_AND_SLOW:
                        lo, hi = a.interval_s or AttackSpec(a.kind, 0).interval_s
                        note(f"attack {a.kind.value} from {sources} sources, one request every "
                             f"{lo:g}-{hi:g} s each (~{sources / ((lo + hi) / 2):.0f} req/s)")
                    else:
                        note(f"attack {a.kind.value} x{a.x:g} from {sources} sources")
            await asyncio.sleep(max(0.0, plan[-1][2] - clock.now()))
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

        lags: list[float] = []
        """How late the sampler woke each second: the load generator's own saturation."""

        async def sampler() -> None:
            second = 0
            while True:
                await asyncio.sleep(max(0.0, second + 1 - clock.now()))
                second += 1
                lags.append(max(0.0, clock.now() - second))
                status, verdict = await asyncio.gather(_admin(front, "/api/status"), _admin(front, "/api/verdict"))
                v, k, vm = _fields(verdict)
                sample_nodes = getattr(front, "sample", None)
                if sample_nodes is not None:
                    await asyncio.to_thread(sample_nodes, second)
                c = ctr.read_all(cluster.counters_dir)
                live.samples.append(Sample(second, _mode_of(status) or vm, v, k, c["attacker"], c["shopper"],
                                           [lab.procs[cluster.name(i)].alive() and not lab.procs[cluster.name(i)].frozen
                                            for i in range(opts.backends)],
                                           _mode_since(status), _evidence(verdict)))
                live.t = clock.now()
                if on_tick is not None:
                    on_tick(live)

        sample_task = asyncio.create_task(sampler())
        phase_task = asyncio.create_task(phases())
        await shoppers.run(until=opts.duration, grace=opts.grace)
        await phase_task
        note("end")
        ended_at = clock.now()
        sample_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sample_task
        live.phase = "done"
        gen_lag = {"max_ms": round(max(lags, default=0.0) * 1000, 1),
                   "mean_ms": round(sum(lags) / len(lags) * 1000, 1) if lags else 0.0}
        final = ctr.read_all(cluster.counters_dir)
        orders = order_summary(cluster.db)
        shop_info = {cluster.name(i): [{"event": e, "pid": p} for e, p in lab.procs[cluster.name(i)].history]
                     for i in range(opts.backends)}
        front_info = front.describe()
        access = front.access_log()
    finally:
        lab.stop_all()
        for pool in (solver, bot_solver):
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    front_info["processes"] = {name: [{"event": e, "pid": p} for e, p in m.history]
                               for name, m in lab.procs.items() if not name.startswith("backend")}
    for name in shop_info:
        shop_info[name] = [{"event": e, "pid": p} for e, p in lab.procs[name].history]
    # copy the front's access log next to the report, with the labels of its phases
    log_copy = None
    if access is not None and access.exists():
        log_copy = work / "access.log"
        if access.resolve() != log_copy.resolve():
            shutil.copyfile(access, log_copy)
    return build_report(opts, plan, legit, attack, live.samples, final, orders, events, shop_info,
                        front_info, wall0, started, ended_at, shoppers.dropped, log_copy,
                        shoppers.leftover, gen_lag)


def _constant(name: str) -> Callable[[], str]:
    """An attack counts its requests in the phase it belongs to, even its stragglers."""
    return lambda: name


def _most_common(values: list[str | None]) -> str | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return Counter(vals).most_common(1)[0][0]


def build_report(opts: DrillOptions, plan: list[tuple[sc.Phase, float, float]], legit: LegitStats,
                 attack: AttackStats, samples: list[Sample], final: dict[str, int], orders: Any,
                 events: list[dict[str, Any]], shop_info: dict[str, Any], front_info: dict[str, Any],
                 wall0: float, started: float, ended_at: float, dropped: int,
                 log_copy: Path | None, leftover: int = 0,
                 gen_lag: dict[str, float] | None = None) -> dict[str, Any]:
    total = legit.total().summary()
    atot = attack.total()
    phases: list[dict[str, Any]] = []
    by_second = {s.t: s for s in samples}
    for ph, start, end in plan:
        lp = legit.phases.get(ph.name)
        summ = lp.summary() if lp is not None else None
        ap = attack.phases.get(ph.name)
        # the verdict the detector held most of the phase's second half
        half = [by_second[t] for t in range(int((start + end) / 2) + 1, int(end) + 1) if t in by_second]
        verdicts = [s.verdict for s in half]
        reached = _reached(by_second, start, end)
        # how long the shield took to change mode in this phase, and how shoppers fared from then on
        def first(modes: tuple[str, ...], start: float = start, end: float = end) -> int | None:
            return next((s.t for t in range(int(start), int(end) + 1)
                         if (s := by_second.get(t)) is not None and s.mode in modes), None)

        elevated = first(("elevated", "under_attack"))
        under = first(("under_attack",))
        react = under if under is not None else elevated
        switch = _switch(by_second, react, wall0 + start, start) if ph.attacks else None
        after_req = sum(legit.requests.at(t) for t in range(react, int(end))) if react is not None else 0
        after_ok = sum(legit.good.at(t) for t in range(react, int(end))) if react is not None else 0
        phases.append({
            "name": ph.name, "start_s": start, "end_s": end,
            "legit_goodput": summ["goodput"] if summ else 0.0,
            "verdict": _most_common(verdicts),
            "verdict_kind": _most_common([s.kind for s in half if s.verdict == _most_common(verdicts)]),
            "mode": _most_common([s.mode for s in half]),
            "expect": ph.expect,
            "shoppers_x": ph.shoppers_x,
            "attacks": [{"kind": a.kind.value, "x": a.x} for a in ph.attacks],
            "faults": [{"action": f.action.value, "backend": f.backend} for f in ph.faults],
            "legit": summ,
            "attack": None if ap is None else {"requests": ap.requests, "answered": ap.answered,
                                               "refused": ap.refused, "challenged": ap.challenged,
                                               "failed": ap.failed, "skipped": ap.skipped},
            "attack_reached_backend": reached,
            "elevated_after_s": round(max(0.0, elevated - start), 1) if elevated is not None else None,
            "under_attack_after_s": round(max(0.0, under - start), 1) if under is not None else None,
            "reaction_s": round(max(0.0, react - start), 1) if react is not None else None,
            "legit_goodput_after_reaction": round(after_ok / after_req, 4) if after_req else None,
            "legit_p99_ms_after_reaction": legit.p99_between(react, end) if react is not None else None,
            **({"mode_switch": switch} if switch is not None else {}),
        })
        if switch is not None:
            events.append({"t": round(start + switch["after_s"], 2), "event": switch["words"],
                           "mark": "switch"})
    n = max(int(ended_at + 0.999), len(samples))
    timeline = []
    prev_a = prev_s = 0
    for t in range(n):
        s = by_second.get(t + 1)
        ra = (s.reached_attack - prev_a) if s else 0
        rs = (s.reached_shopper - prev_s) if s else 0
        if s:
            prev_a, prev_s = s.reached_attack, s.reached_shopper
        timeline.append({
            "t": float(t), "legit_rps": float(legit.requests.at(t)), "legit_ok_rps": float(legit.good.at(t)),
            "attack_rps": float(attack.sent.at(t)), "mode": s.mode if s else None,
            "verdict": s.verdict if s else None, "attack_reached_rps": float(ra),
            "legit_reached_rps": float(rs), "backends_up": sum(s.alive) if s else None,
            "phase": next((p.name for p, a, b in plan if a <= t < b), plan[-1][0].name),
        })
    expected = len(legit.acknowledged)
    return {
        "scenario": opts.scenario, "against": opts.against, "duration_s": float(opts.duration),
        "started_at": started, "clock_zero_unix": wall0,
        "settings": {"base_rate_sessions_per_s": opts.base_rate, "backends": opts.backends,
                     "shield_mode": opts.shield_mode, "shield_toml": opts.shield_toml,
                     "generator_loop_lag": gen_lag,
                     "shop": vars(opts.shape), "ok_within_s": 2.0, "sessions_dropped": dropped,
                     "front": front_info},
        "legit": {**total, "http_exchanges": legit.exchanges, "sessions_in_flight_at_end": leftover,
                  "access": dict(legit.access), "client_addresses": len(legit.client_addresses)},
        "attack": {"requests": atot.requests, "reached_backend": final["attacker"],
                   "sources": len(attack.sources), "answered": atot.answered, "refused": atot.refused,
                   "challenged": atot.challenged, "failed": atot.failed, "skipped": atot.skipped},
        "backend_requests": {"shopper": final["shopper"], "attacker": final["attacker"], "other": final["other"],
                             "health_probes": final["probe"]},
        "orders": {"expected": expected, "recorded": orders.sessions, "duplicated": orders.duplicated,
                   "lost": len(legit.acknowledged - orders.order_sessions),
                   "unacknowledged": len(orders.order_sessions - legit.acknowledged),
                   "checkout_attempts_at_shop": orders.attempts, "idempotency_keys": orders.keys},
        "phases": phases,
        "timeline": timeline,
        "events": sorted(events, key=lambda e: float(e["t"])),
        "backends": shop_info,
        "errors": dict(legit.errors.most_common(10)),
        "access_log": str(log_copy) if log_copy else None,
    }


def _switch(by_second: dict[int, Sample], react: int | None, start_unix: float,
            start: float) -> dict[str, Any] | None:
    """When the shield raised its mode in an attack phase, to the tenth of a
    second (the shield's own ``mode_since``; else the one-second sample that
    first saw it), by whom, and the detector's evidence in words."""
    if react is None:
        return None
    s = by_second[react]
    since = s.mode_since
    exact = since is not None and since <= start_unix + (react - start) + 1.0
    after = max(0.0, since - start_unix) if exact and since is not None else max(0.0, react - start)
    # the evidence: the first sample from the switch on whose verdict is not normal
    ev_sample = next((x for t in range(react, react + 4) if (x := by_second.get(t)) is not None
                      and x.verdict not in (None, "normal") and x.evidence), s)
    verdict = "/".join(v for v in (ev_sample.verdict, ev_sample.kind) if v)
    evidence = [e for e in ev_sample.evidence if not e.startswith("pending:")]
    words = (f"mode {s.mode} {after:.1f} s after the attack began"
             + (f": detector says {verdict}" if verdict else "")
             + (" (" + "; ".join(evidence) + ")" if evidence else ""))
    return {"after_s": round(after, 2), "mode": s.mode, "exact": exact,
            "verdict": verdict or None, "evidence": evidence, "words": words}


def _reached(by_second: dict[int, Sample], start: float, end: float) -> int | None:
    a = by_second.get(int(start)) if int(start) > 0 else None
    b = by_second.get(int(end)) or (by_second[max(by_second)] if by_second else None)
    if b is None:
        return None
    return b.reached_attack - (a.reached_attack if a else 0)


__all__ = ["DrillOptions", "Kind", "Live", "run_drill"]
