"""Admission: who waits, who is served first and who is shed when the
backends are full."""

from __future__ import annotations

import asyncio

from shieldwall.guard._admission import AdmissionCore, PriorityAdmission
from shieldwall.guard._standing import Standing
from shieldwall.guard.decision import ClientClass
from shieldwall.guard.settings import AdmissionSettings

C, V, U, S = ClientClass.CUSTOMER, ClientClass.VERIFIED, ClientClass.UNKNOWN, ClientClass.SUSPECT


def _settings(**kw: object) -> AdmissionSettings:
    """A plain priority queue (no reserve, no overload policy) unless asked."""
    return AdmissionSettings.model_validate({"limit": 1, "queue_size": 10, "reserve": 0.0,
                                             "overload_after": 60.0, **kw})


def test_core_admits_the_highest_class_first_fifo_within_a_class() -> None:
    core = AdmissionCore(_settings())
    assert core.offer(U, 0, 0.0)[0] == "admit"
    tickets = [core.offer(cls, 0, 0.0)[1] for cls in (U, V, U, C, V)]
    order = []
    for _ in tickets:
        (t,) = core.release(0.01, True, 0.05)  # a burst, not overload: FIFO
        order.append(t)
    assert [t.cls for t in order] == [C, V, V, U, U]
    assert order[1] is tickets[1] and order[3] is tickets[0]


def test_full_queue_sheds_the_lowest_class_first() -> None:
    core = AdmissionCore(_settings(queue_size=2, queue_suspects=True))
    core.offer(U, 0, 0.0)
    _, s1, _ = core.offer(S, 0, 0.0)
    _, u1, _ = core.offer(U, 0, 0.0)
    verdict, c1, evicted = core.offer(C, 0, 0.0)
    assert verdict == "queue" and evicted == [s1]
    verdict, _, evicted = core.offer(C, 0, 0.0)
    assert verdict == "queue" and evicted == [u1]
    verdict, _, evicted = core.offer(V, 0, 0.0)
    assert verdict == "shed" and evicted == []  # nobody below a verified client left
    verdict, _, evicted = core.offer(C, Standing.CHECKOUT, 0.0)  # checkout outranks them all
    assert verdict == "queue" and evicted[0].cls is C and evicted[0] is not c1


def test_suspects_are_not_queued_by_default() -> None:
    core = AdmissionCore(_settings())
    core.offer(U, 0, 0.0)
    assert core.offer(S, 0, 0.0)[0] == "shed"
    assert core.offer(U, 0, 0.0)[0] == "queue"


def test_waiters_past_their_deadline_are_shed() -> None:
    core = AdmissionCore(_settings(queue_timeout=1.0, customer_queue_timeout=5.0))
    core.offer(U, 0, 0.0)
    _, u, _ = core.offer(U, 0, 0.0)
    _, c, _ = core.offer(C, 0, 0.0)
    assert core.expire(2.0) == [u]
    assert core.expire(6.0) == [c]
    assert core.waiting == 0


def _adaptive(**kw: object) -> AdmissionCore:
    return AdmissionCore(_settings(**{"adaptive": True, "latency_tolerance": 2.0,
                                      "adapt_window": 0.25, "baseline_window": 30.0, **kw}))


def _run(core: AdmissionCore, now: float, seconds: float, rate: float,
         latency: object, load: int | None = None) -> float:
    """Drive ``core`` at ``rate`` responses per second for ``seconds``, keeping
    ``load`` requests offered (default: always one more than the limit, so the
    backend stays saturated). ``latency(i, inflight)`` gives each response's."""
    step = 1.0 / rate
    for i in range(int(seconds * rate)):
        want = int(core.limit) + 1 if load is None else load
        while core.inflight + core.waiting < want:
            core.offer(U, Standing.BROWSER, now)
        inflight = core.inflight
        now += step
        core.release(latency(i, inflight), True, now)  # type: ignore[operator]
    return now


def test_adaptive_limit_cuts_on_slow_responses_and_grows_when_saturated() -> None:
    core = _adaptive(limit=10, min_limit=2, max_limit=20)
    now = _run(core, 0.0, 1.0, 100, lambda i, n: 0.01)  # fast at full load: grows
    grown = core.limit
    assert grown > 10
    _run(core, now, 1.5, 20, lambda i, n: 0.2)  # far above the baseline: cut
    assert core.limit < grown * 0.5
    assert core.limit >= 2
    assert core.counts["limit:cut"] >= 2


def test_adaptive_limit_is_stable_under_steady_latency_when_not_saturated() -> None:
    core = _adaptive(limit=8, max_limit=64)
    _run(core, 0.0, 20.0, 100, lambda i, n: 0.05, load=4)  # half the limit in use
    assert core.limit == 8
    assert "limit:cut" not in core.counts


def test_a_mix_of_fast_and_slow_requests_does_not_collapse_the_limit() -> None:
    # one request in four is a 2 ms static file, the rest 80 ms pages: the old
    # lowest-latency baseline saw every page as congestion
    core = _adaptive(limit=16, min_limit=2, max_limit=32)
    _run(core, 0.0, 20.0, 100, lambda i, n: 0.002 if i % 4 == 0 else 0.08, load=8)
    assert core.limit == 16
    assert "limit:cut" not in core.counts
    assert 0.05 < core.baseline < 0.07


def test_limit_settles_where_latency_starts_rising_with_concurrency_and_recovers() -> None:
    # a backend with 4 workers of 20 ms: beyond 4 in flight requests queue, so
    # latency grows with concurrency
    def queued(i: int, inflight: int) -> float:
        return 0.02 * max(1.0, inflight / 4)

    core = _adaptive(limit=64, min_limit=1, max_limit=128)
    now = _run(core, 0.0, 2.0, 100, lambda i, n: 0.02, load=2)  # calm: the baseline
    assert core.limit == 64
    now = _run(core, now, 10.0, 100, queued)  # a flood keeps it saturated
    assert 4 <= core.limit <= 12
    assert core.counts["limit:cut"] >= 3
    settled = core.limit
    # the backend gets faster (more workers): saturated calm windows grow it again
    now = _run(core, now, 5.0, 100, lambda i, n: 0.02)
    assert core.limit >= settled + 10


def test_the_baseline_follows_a_slower_mix_and_the_limit_recovers() -> None:
    core = _adaptive(limit=16, min_limit=2, max_limit=32, baseline_window=5.0)
    now = _run(core, 0.0, 5.0, 100, lambda i, n: 0.01, load=4)
    now = _run(core, now, 15.0, 100, lambda i, n: 0.05, load=4)  # pages got slower
    assert 0.04 < core.baseline < 0.06  # the old mix is forgotten
    cut = core.limit
    _run(core, now, 20.0, 100, lambda i, n: 0.05)  # saturated, steady: grows back
    assert core.limit > cut + 10


def test_responses_that_never_came_back_are_no_latency_signal() -> None:
    core = _adaptive(limit=8)
    _run(core, 0.0, 2.0, 100, lambda i, n: 0.0, load=8)
    assert core.baseline == 0.0 and core.limit == 8


def test_shadow_shedding_admits_over_the_limit_and_counts() -> None:
    core = AdmissionCore(_settings(), shadow=True)
    core.offer(U, 0, 0.0)
    assert core.offer(S, 0, 0.0)[0] == "admit"
    assert core.inflight == 2 and core.counts["shadow:shed"] == 1


async def test_with_backends_full_a_customer_is_served_before_any_unknown() -> None:
    adm = PriorityAdmission(_settings(limit=2, queue_timeout=30, customer_queue_timeout=30))
    assert await adm.acquire("b1", U) is None
    assert await adm.acquire("b1", U) is None
    served: list[str] = []

    async def client(name: str, cls: ClientClass) -> None:
        assert await adm.acquire("b1", cls) is None
        served.append(name)

    tasks = [asyncio.create_task(client(f"unknown{i}", U)) for i in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(client("customer", C)))
    await asyncio.sleep(0)
    assert served == [] and adm.core("b1").waiting == 6
    for _ in range(6):
        adm.release("b1", 0.01, True)
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert served[0] == "customer"
    assert served[1:] == [f"unknown{i}" for i in range(5)]


async def test_queue_deadline_returns_retry_after() -> None:
    adm = PriorityAdmission(_settings(queue_timeout=0.05, retry_after=7))
    assert await adm.acquire("b1", V) is None
    assert await adm.acquire("b1", U) == 7
    assert adm.core("b1").waiting == 0


async def test_evicted_waiter_is_told_to_retry() -> None:
    adm = PriorityAdmission(_settings(queue_size=1, queue_timeout=30, retry_after=3))
    await adm.acquire("b1", U)
    low = asyncio.create_task(adm.acquire("b1", U))
    await asyncio.sleep(0)
    high = asyncio.create_task(adm.acquire("b1", C))
    assert await low == 3
    adm.release("b1", 0.01, True)
    assert await high is None


async def test_a_cancelled_waiter_leaks_no_slot() -> None:
    adm = PriorityAdmission(_settings(queue_timeout=30))
    await adm.acquire("b1", U)
    waiter = asyncio.create_task(adm.acquire("b1", U))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    adm.release("b1", 0.01, True)
    core = adm.core("b1")
    assert core.inflight == 0 and core.waiting == 0
    assert await adm.acquire("b1", U) is None


async def test_backends_are_limited_separately() -> None:
    adm = PriorityAdmission(_settings(queue_timeout=0.01))
    assert await adm.acquire("b1", U) is None
    assert await adm.acquire("b2", U) is None
    assert adm.status()["b1"]["inflight"] == 1


async def test_try_acquire_admits_without_waiting_while_a_slot_is_free() -> None:
    adm = PriorityAdmission(_settings(limit=2))
    assert adm.try_acquire("b1", U) and adm.try_acquire("b1", C)
    core = adm.core("b1")
    assert core.inflight == 2 and core.counts["admit"] == 2
    assert not adm.try_acquire("b1", C)  # full: the caller must go through acquire
    assert core.inflight == 2
    adm.release("b1", 0.01, True)
    assert adm.try_acquire("b1", U)


async def test_try_acquire_never_jumps_the_queue() -> None:
    adm = PriorityAdmission(_settings(limit=1, queue_timeout=30))
    assert adm.try_acquire("b1", U)
    waiter = asyncio.create_task(adm.acquire("b1", U))
    await asyncio.sleep(0)
    adm.core("b1").limit = 2.0  # a slot frees up while someone waits
    assert not adm.try_acquire("b1", C)
    adm.release("b1", 0.01, True)
    assert await waiter is None
