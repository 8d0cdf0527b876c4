"""The rate limiter on a fake clock: exact grants per second, AIMD math, header scopes.

No test measures wall time: the clock only moves when the limiter sleeps on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from dbt_stripe_activation.ratelimit import (
    GLOBAL,
    LEARNED_PACE,
    RateLimiter,
    is_concurrency,
    scope_for_reason,
)

EPS = 1e-9  # float sums of 1/rate land a hair under whole seconds
CREATE = "POST /v1/customers"
UPDATE = "POST /v1/customers/{id}"


class FakeClock:
    """A clock that moves only when someone sleeps on it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now


def limiter(
    clock: FakeClock, global_rps: float = 10, endpoint_rps: float = 100, **kw
) -> RateLimiter:
    kw.setdefault("concurrency", 4)
    # The AIMD arithmetic below is worked out for these parameters, not for the defaults.
    kw.setdefault("decrease_factor", 0.7)
    kw.setdefault("quiet_seconds", 2.0)
    return RateLimiter(global_rps, endpoint_rps, clock=clock, sleep=clock.sleep, **kw)


def grant_times(lim: RateLimiter, clock: FakeClock, endpoints: list[str]) -> list[float]:
    times = []
    for endpoint in endpoints:
        lim.acquire(endpoint)
        times.append(clock())
    return times


def within(times: list[float], start: float, end: float) -> int:
    return sum(1 for t in times if start - EPS <= t < end - EPS)


def test_bucket_grants_exactly_its_rate_each_second() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10)
    times = grant_times(lim, clock, [CREATE] * 35)
    assert within(times, 0, 1) == 10
    assert within(times, 0, 3) == 30
    assert within(times, 1, 2) == 10
    assert times[:3] == pytest.approx([0.0, 0.1, 0.2])


def test_global_bucket_caps_the_sum_of_endpoints() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10, endpoint_rps=25)
    times = grant_times(lim, clock, [CREATE, UPDATE] * 15)
    assert within(times, 0, 1) == 10
    assert within(times, 0, 2) == 20


def test_endpoint_bucket_paces_each_endpoint_separately() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=100, endpoint_rps=5)
    endpoints = [CREATE, UPDATE] * 12
    times = grant_times(lim, clock, endpoints)
    creates = [t for t, e in zip(times, endpoints, strict=True) if e == CREATE]
    updates = [t for t, e in zip(times, endpoints, strict=True) if e == UPDATE]
    assert within(creates, 0, 1) == 5
    assert within(updates, 0, 1) == 5
    assert within(creates, 0, 2) == 10


def test_endpoint_override_sets_its_own_ceiling() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=100, endpoint_rps=25, endpoint_overrides={"GET /s": 2})
    assert lim.state("GET /s").ceiling == 2
    assert within(grant_times(lim, clock, ["GET /s"] * 6), 0, 2) == 4


def test_burst_lets_a_rested_bucket_send_at_once() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10, burst=3)
    times = grant_times(lim, clock, [CREATE] * 13)
    assert times[:3] == [0.0, 0.0, 0.0]
    assert within(times, 0, 1) == 12  # 3 at once, then one every 0.1 s


def test_reservations_from_many_threads_never_share_a_slot() -> None:
    clock = FakeClock()  # frozen: reserve() does not sleep
    lim = limiter(clock, global_rps=20)
    times: list[float] = []
    guard = threading.Lock()

    def worker() -> None:
        mine = [lim.reserve(CREATE) for _ in range(25)]
        with guard:
            times.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.sort()
    assert len(times) == 200
    assert within(times, 0, 1) == 20
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) == pytest.approx(1 / 20)


def test_a_rate_limited_global_bucket_is_cut_by_the_factor_once_per_cooldown() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10, quiet_seconds=1e9)
    assert lim.on_rate_limited(CREATE, "global-rate") == GLOBAL
    assert lim.rate() == pytest.approx(7.0)
    # Requests in flight answer 429 together: one congestion signal, one cut.
    assert lim.on_rate_limited(CREATE, "global-rate") == GLOBAL
    assert lim.rate() == pytest.approx(7.0)
    clock.set(1.0)
    lim.on_rate_limited(CREATE, None)
    assert lim.rate() == pytest.approx(4.9)
    assert lim.rate(CREATE) == 100  # the endpoint bucket was not named


def test_the_cut_rate_paces_requests() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10, quiet_seconds=1e9)
    lim.on_rate_limited(CREATE, "global-rate")
    times = grant_times(lim, clock, [CREATE] * 20)
    assert within(times, 0, 1) == 7


def test_rate_never_falls_below_the_floor() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10, floor_rps=2, quiet_seconds=1e9)
    for second in range(20):
        clock.set(float(second))
        lim.on_rate_limited(CREATE, "global-rate")
    assert lim.rate() == 2


def test_floor_is_never_above_the_ceiling() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=0.5, floor_rps=1, quiet_seconds=1e9)
    lim.on_rate_limited(CREATE, None)
    assert lim.rate() == 0.5


def test_recovery_is_additive_after_a_quiet_period_up_to_the_ceiling() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10, quiet_seconds=2, recovery_rps_per_second=1)
    lim.on_rate_limited(CREATE, "global-rate")
    assert lim.rate() == pytest.approx(7.0)
    clock.set(1.9)
    assert lim.rate() == pytest.approx(7.0)  # still within the quiet period
    clock.set(3.0)
    assert lim.rate() == pytest.approx(8.0)
    clock.set(3.5)
    assert lim.rate() == pytest.approx(8.5)
    clock.set(100.0)
    assert lim.rate() == 10


def test_a_new_429_restarts_the_quiet_period() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=10, quiet_seconds=2, recovery_rps_per_second=1)
    lim.on_rate_limited(CREATE, "global-rate")  # 7.0 at t=0
    clock.set(3.0)
    lim.on_rate_limited(CREATE, "global-rate")  # recovered to 8.0, then cut to 5.6
    assert lim.rate() == pytest.approx(5.6)
    clock.set(4.5)
    assert lim.rate() == pytest.approx(5.6)
    clock.set(6.0)
    assert lim.rate() == pytest.approx(6.6)


def test_default_cut_and_recovery_step_is_ten_percent_of_the_ceiling() -> None:
    clock = FakeClock()
    lim = RateLimiter(40, 100, 4, clock=clock, sleep=clock.sleep)
    lim.on_rate_limited(CREATE, None)
    assert lim.rate() == pytest.approx(34.0)  # cut by 0.85
    clock.set(2.0)  # 1 s quiet, then 1 s of recovery at 4 requests/s per second
    assert lim.rate() == pytest.approx(34.0 + 4.0)
    clock.set(5.0)
    assert lim.rate() == pytest.approx(40.0)  # never above the ceiling


STREAM = "POST /v2/billing/meter_event_stream"


def stream_limiter(clock: FakeClock) -> RateLimiter:
    """The meter event stream's separate pool at the test-mode default, 1,000 a second."""
    return RateLimiter(100, 100, 4, separate_pools={STREAM: 1000.0}, clock=clock,
                       sleep=clock.sleep)


def admit_for_a_second(lim: RateLimiter, clock: FakeClock, endpoint: str, count: int) -> None:
    """`count` requests sent and admitted over the next second, evenly."""
    start = clock()
    for i in range(count):
        clock.set(start + i / count)
        lim.reserve(endpoint)
        lim.on_admitted(endpoint)
    clock.set(start + 1.0)


def test_a_429_after_a_second_of_answers_learns_the_limit_from_what_was_admitted() -> None:
    # A default ten times the real limit (the sandbox's meter event stream): one 429 brings
    # the pace just under what Stripe admitted, instead of 14 seconds of cuts by 0.85.
    clock = FakeClock()
    lim = stream_limiter(clock)
    admit_for_a_second(lim, clock, STREAM, 100)
    lim.on_rate_limited(STREAM, "endpoint-rate")
    state = lim.state(STREAM)
    assert state.learned == pytest.approx(100)
    assert state.rate == pytest.approx(100 * LEARNED_PACE)
    times = grant_times(lim, clock, [STREAM] * 300)
    assert within(times, clock() - 1, clock()) <= 100 * LEARNED_PACE + 1


def test_without_a_second_of_answers_the_cut_is_the_blind_factor() -> None:
    clock = FakeClock()
    lim = stream_limiter(clock)
    for _ in range(50):
        lim.on_admitted(STREAM)
    clock.set(0.5)
    lim.on_rate_limited(STREAM, "endpoint-rate")
    assert lim.state(STREAM).learned is None
    assert lim.rate(STREAM) == pytest.approx(850)


def test_a_bucket_resumed_after_a_pause_has_no_measure_until_a_second_passes() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=40, quiet_seconds=1e9)
    admit_for_a_second(lim, clock, CREATE, 40)
    clock.set(clock() + 10.0)  # a pause (the listing phase, say), then 0.3 s of answers
    for _ in range(12):
        clock.set(clock() + 0.025)
        lim.reserve(CREATE)
        lim.on_admitted(CREATE)
    lim.on_rate_limited(CREATE, "global-rate")
    assert lim.state().learned is None  # 12 answers are not a second's worth
    assert lim.rate() == pytest.approx(40 * 0.7)


def test_a_flood_of_429s_in_the_first_second_is_a_measure_a_few_are_not() -> None:
    # The stream's first tenth of a second at a 10x default: 100 admitted, then the requests
    # in flight behind them refused together.
    clock = FakeClock()
    lim = stream_limiter(clock)
    for i in range(100):
        clock.set(i / 1000)
        lim.reserve(STREAM)
        lim.on_admitted(STREAM)
    lim.on_rate_limited(STREAM, "endpoint-rate")
    assert (lim.state(STREAM).learned, lim.rate(STREAM)) == (None, pytest.approx(850))
    for _ in range(8):  # nine refusals in all: under a tenth of the answers
        lim.on_rate_limited(STREAM, "endpoint-rate")
    assert (lim.state(STREAM).learned, lim.rate(STREAM)) == (None, pytest.approx(850))
    lim.on_rate_limited(STREAM, "endpoint-rate")  # the tenth
    assert lim.state(STREAM).learned == pytest.approx(100)
    assert lim.rate(STREAM) == pytest.approx(100 * LEARNED_PACE)
    for _ in range(20):  # once learned, the rest of the flood changes nothing
        lim.on_rate_limited(STREAM, "endpoint-rate")
    assert lim.rate(STREAM) == pytest.approx(100 * LEARNED_PACE)


def test_answers_older_than_a_second_do_not_count() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=40, quiet_seconds=1e9)
    admit_for_a_second(lim, clock, CREATE, 40)
    admit_for_a_second(lim, clock, CREATE, 20)  # a second half as busy
    lim.on_rate_limited(CREATE, "global-rate")
    assert lim.state().learned == pytest.approx(20)
    assert lim.rate() == pytest.approx(20 * LEARNED_PACE)


PACE_200 = 200 * LEARNED_PACE


def learned_200(clock: FakeClock) -> RateLimiter:
    """A limiter whose global bucket learned a limit of 200 (paced at PACE_200) at clock()."""
    lim = RateLimiter(1000, 1000, 4, clock=clock, sleep=clock.sleep, quiet_seconds=1.0)
    admit_for_a_second(lim, clock, CREATE, 200)
    lim.on_rate_limited(CREATE, "global-rate")
    return lim


def test_a_learned_limit_recovers_quickly_to_its_pace_then_probes_slowly() -> None:
    clock = FakeClock()
    lim = learned_200(clock)
    assert lim.rate() == pytest.approx(PACE_200)
    clock.set(clock() + 1.0)
    assert lim.rate() == pytest.approx(PACE_200)  # the quiet second
    clock.set(clock() + 10.0)
    # Ten seconds of probing at 1% of the learned limit a second, not 10% of the ceiling.
    assert lim.rate() == pytest.approx(PACE_200 + 10 * 2)
    clock.set(clock() + 1.0)
    admit_for_a_second(lim, clock, CREATE, 150)  # the account's limit fell
    lim.on_rate_limited(CREATE, "global-rate")
    assert lim.state().learned == pytest.approx(150)
    assert lim.rate() == pytest.approx(150 * LEARNED_PACE)


def test_a_pace_cut_below_the_learned_limit_recovers_to_it_at_the_quick_step() -> None:
    clock = FakeClock()
    lim = learned_200(clock)
    # Answers to requests sent before the cut: 200 more admitted in the next second, and a
    # 429 among them. The pace is cut under itself, the learned limit stays 200.
    admit_for_a_second(lim, clock, CREATE, 200)
    lim.on_rate_limited(CREATE, "global-rate")
    assert lim.state().learned == pytest.approx(200)
    assert lim.rate() == pytest.approx(PACE_200 * LEARNED_PACE)
    clock.set(clock() + 1.0 + 0.1)  # quiet, then a tenth of a second at 10% of 200 a second
    assert lim.rate() == pytest.approx(PACE_200 * LEARNED_PACE + 2)
    clock.set(clock() + 2.0)  # back at PACE_200 after 0.2 s in all, then probing at 2 a second
    assert lim.rate() == pytest.approx(PACE_200 + (2.1 - PACE_200 * (1 - LEARNED_PACE) / 20) * 2)


@pytest.mark.parametrize(
    ("reason", "cut"),
    [
        ("global-rate", GLOBAL),
        ("global-concurrency", None),  # requests in flight, not their rate (was GLOBAL)
        (None, GLOBAL),
        ("endpoint-rate", UPDATE),
        ("endpoint-concurrency", None),  # (was UPDATE)
        ("Endpoint-Rate", UPDATE),
        ("resource-specific", None),
    ],
)
def test_the_reason_header_names_the_bucket_that_is_cut(
    reason: str | None, cut: str | None
) -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rps=20, endpoint_rps=20, quiet_seconds=1e9)
    assert lim.on_rate_limited(UPDATE, reason) == cut
    expected = {GLOBAL: 20.0, UPDATE: 20.0, CREATE: 20.0}
    if cut is not None:
        expected[cut] = 14.0
    assert {scope: lim.rate(scope) for scope in expected} == pytest.approx(expected)


def test_scope_for_reason() -> None:
    assert scope_for_reason("global-rate") == GLOBAL
    assert scope_for_reason("") == GLOBAL
    assert scope_for_reason("endpoint-rate") == "endpoint"
    assert scope_for_reason("endpoint-concurrency") is None  # was "endpoint"
    assert scope_for_reason("resource-specific") is None
    assert scope_for_reason("something-new") is None
    assert is_concurrency("global-concurrency") and is_concurrency(" Endpoint-Concurrency")
    assert not is_concurrency("global-rate") and not is_concurrency(None)


# -- 429s that follow the pace, and 429s that do not ---------------------------------------


def run_against(
    lim: RateLimiter, clock: FakeClock, seconds: float, refuse: Callable[[float, int], bool],
    reason: str | None = None,
) -> list[tuple[float, bool]]:
    """Send as fast as the limiter allows for `seconds`, each request answered at once:
    `refuse(sent_at, n)` says which are 429s (with `reason`). (sent at, refused) each."""
    sent: list[tuple[float, bool]] = []
    end = clock() + seconds
    while clock() < end:
        lim.acquire(CREATE)
        now = clock()
        refused = refuse(now, len(sent))
        if refused:
            lim.on_rate_limited(CREATE, reason)
        else:
            lim.on_admitted(CREATE)
        sent.append((now, refused))
    return sent


def thirty_percent(_at: float, n: int) -> bool:
    """Three requests in ten refused, whatever the pace (a shared account, another app)."""
    return n % 10 in (2, 5, 8)


def admitting(limit: int) -> Callable[[float, int], bool]:
    """A sliding one-second window of `limit` requests (refusals not counted), as Stripe's."""
    window: list[float] = []

    def refuse(at: float, _n: int) -> bool:
        window[:] = [t for t in window if t > at - 1.0]
        if len(window) >= limit:
            return True
        window.append(at)
        return False

    return refuse


def last_seconds(sent: list[tuple[float, bool]], seconds: float) -> int:
    end = sent[-1][0]
    return sum(1 for at, _ in sent if at > end - seconds)


@pytest.mark.parametrize("reason", [None, "global-rate"])
def test_429s_at_the_same_share_whatever_the_pace_do_not_hold_the_rate_down(
    reason: str | None,
) -> None:
    # 30% of the answers are rate 429s whatever the pace (issue 21: the account's own
    # application, or an older API that names no reason). Each cut is learned from what was
    # admitted, then undone when the share stays the same under the lower pace: before, every
    # second took the pace to 0.7 * 0.98 of itself, down to the floor of 1 request a second.
    clock = FakeClock()
    lim = RateLimiter(100, 100, 16, clock=clock, sleep=clock.sleep)
    sent = run_against(lim, clock, 20.0, thirty_percent, reason)
    assert lim.rate() >= 90
    assert lim.state().learned is None
    assert last_seconds(sent, 10.0) >= 0.9 * 100 * 10


def test_concurrency_429s_never_touch_the_rate() -> None:
    clock = FakeClock()
    lim = RateLimiter(100, 100, 16, clock=clock, sleep=clock.sleep)
    sent = run_against(lim, clock, 5.0, thirty_percent, "global-concurrency")
    assert (lim.rate(), lim.rate(CREATE), lim.state().learned) == (100, 100, None)
    assert last_seconds(sent, 4.0) >= 4 * 100 - 1


def test_a_real_limit_is_learned_within_a_second_and_kept() -> None:
    # A default twice the account's limit: learned from the first flood, and not undone,
    # since under the learned pace the 429s stop.
    clock = FakeClock()
    lim = RateLimiter(100, 100, 16, clock=clock, sleep=clock.sleep)
    run_against(lim, clock, 1.0, admitting(50))
    learned = lim.state().learned
    assert learned is not None and 45 <= learned <= 50
    sent = run_against(lim, clock, 10.0, admitting(50))
    assert lim.state().learned == pytest.approx(learned)
    assert lim.rate() <= 50
    assert sum(refused for at, refused in sent if at > sent[-1][0] - 5) <= 2


def test_a_real_limit_under_429s_that_do_not_follow_the_pace_is_still_learned() -> None:
    # Once 30% of 429s are known not to follow the pace, a limit that refuses far more than
    # that share (the account's application takes most of it) is learned at once.
    clock = FakeClock()
    lim = RateLimiter(100, 100, 16, clock=clock, sleep=clock.sleep)
    run_against(lim, clock, 10.0, thirty_percent)
    assert lim.rate() >= 90
    window = admitting(30)
    run_against(lim, clock, 3.0, lambda at, n: window(at, n) or thirty_percent(at, n))
    learned = lim.state().learned
    assert learned is not None and learned <= 30
    assert lim.rate() <= 30


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class BlockingSleep:
    """A sleep that blocks until `wake` is set, then moves the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.asleep, self.wake = threading.Event(), threading.Event()

    def __call__(self, seconds: float) -> None:
        self.asleep.set()
        assert self.wake.wait(10)
        self.clock.sleep(seconds)


def test_a_thread_sleeping_for_its_slot_holds_no_lock() -> None:
    clock = FakeClock()
    blocking_sleep = BlockingSleep(clock)
    asleep, wake = blocking_sleep.asleep, blocking_sleep.wake

    lim = RateLimiter(1, 100, 4, clock=clock, sleep=blocking_sleep, decrease_factor=0.7)
    lim.acquire(CREATE)  # t=0: no wait
    sleeper = threading.Thread(target=lim.acquire, args=(CREATE,))
    sleeper.start()
    assert asleep.wait(10)
    # Another thread can reserve, cut and read rates while the first one sleeps.
    assert lim.reserve(UPDATE) == 2.0
    lim.on_rate_limited(CREATE, "endpoint-rate")
    assert lim.state(CREATE).rate == 70
    wake.set()
    sleeper.join(10)
    assert not sleeper.is_alive()


def test_concurrency_cap_holds_extra_requests_until_a_slot_frees() -> None:
    clock = FakeClock()
    lim = RateLimiter(1000, 1000, 2, clock=clock, sleep=clock.sleep)
    release = [threading.Event() for _ in range(3)]
    entered = [threading.Event() for _ in range(3)]

    def request(i: int) -> None:
        with lim.slot(CREATE):
            entered[i].set()
            assert release[i].wait(10)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(3)]
    threads[0].start()
    threads[1].start()
    assert entered[0].wait(10) and entered[1].wait(10)
    threads[2].start()
    wait_until(lambda: lim.waiting == 1, "the third request to wait")
    assert not entered[2].is_set()
    assert lim.in_flight == 2
    release[0].set()
    assert entered[2].wait(10)
    release[1].set()
    release[2].set()
    for t in threads:
        t.join(10)
    assert lim.in_flight == 0
    assert lim.max_in_flight == 2


def test_a_request_waiting_for_its_paced_time_holds_no_slot() -> None:
    """One slot; an account whose budget is used up waits for its time without the slot,
    so another account's request that is due goes first."""
    clock = FakeClock()
    blocking_sleep = BlockingSleep(clock)
    asleep, wake = blocking_sleep.asleep, blocking_sleep.wake

    lim = RateLimiter(100, 100, 1, account_rps=1, clock=clock, sleep=blocking_sleep)
    with lim.slot(CREATE, "acct_slow"):
        pass  # its budget: the next request in a second

    def send(account: str, sent: threading.Event) -> threading.Thread:
        def request() -> None:
            with lim.slot(CREATE, account):
                sent.set()

        thread = threading.Thread(target=request)
        thread.start()
        return thread

    slow_sent, entered = threading.Event(), threading.Event()
    waiting = send("acct_slow", slow_sent)
    assert asleep.wait(10)
    other = send("acct_due", entered)
    assert entered.wait(10), "the due request waited behind one that was not due"
    assert not slow_sent.is_set()
    wake.set()
    for thread in (waiting, other):
        thread.join(10)
    assert slow_sent.is_set() and clock() == pytest.approx(1.0)


def test_requests_that_waited_for_a_slot_past_their_time_are_paced_again() -> None:
    """Two requests wait for the one slot long past their paced times: when it frees they
    go out paced (0.1 s apart at 10/s), not together."""
    clock = FakeClock()
    lim = RateLimiter(10, 100, 1, clock=clock, sleep=clock.sleep)
    release = threading.Event()
    holding = threading.Event()
    sent_at: list[float] = []

    def holder() -> None:
        with lim.slot(CREATE):
            holding.set()
            assert release.wait(10)

    def request() -> None:
        with lim.slot(CREATE):
            sent_at.append(clock())

    first = threading.Thread(target=holder)
    first.start()
    assert holding.wait(10)
    waiters = [threading.Thread(target=request) for _ in range(2)]
    for thread in waiters:
        thread.start()
    wait_until(lambda: lim.waiting == 2, "both requests to wait for the slot")
    clock.set(5.0)
    release.set()
    for thread in (first, *waiters):
        thread.join(10)
    assert sent_at == pytest.approx([5.0, 5.1])


def test_a_thread_that_woke_late_with_a_slot_free_is_not_paced_again() -> None:
    """A busy interpreter wakes a paced thread late; with a slot free it is sent as it is.
    Pacing it again would take a second reservation and leave its own slot unused: a paced
    stream of such requests would then run under its rate."""
    clock = FakeClock()

    def oversleep(seconds: float) -> None:
        clock.sleep(seconds + 0.05)  # every wake-up 50 ms late

    lim = RateLimiter(10, 100, 4, clock=clock, sleep=oversleep)
    sent_at: list[float] = []
    for _ in range(3):
        with lim.slot(CREATE):
            sent_at.append(clock())
    assert sent_at == pytest.approx([0.0, 0.15, 0.25])
    # Three reservations for three requests: the next free slot is the fourth's, at 0.3.
    assert lim.reserve(CREATE) == pytest.approx(0.3)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 25, 4)
    with pytest.raises(ValueError):
        RateLimiter(25, 25, 0)
    with pytest.raises(ValueError):
        RateLimiter(25, 25, 4, decrease_factor=1.5)


def test_each_connected_account_has_its_own_budget_and_slots() -> None:
    """Stripe measures each account's requests on their own: one account's pace and 429s
    never slow another's or the platform's, and one account holds at most its share of the
    concurrency slots."""
    clock = FakeClock()
    rl = limiter(clock, global_rps=10, account_rps=5, concurrency=8)
    a_times = [rl.reserve(CREATE, "acct_a") for _ in range(5)]
    b_first = rl.reserve(CREATE, "acct_b")
    platform_first = rl.reserve(CREATE)
    assert a_times == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])  # 5/s, the account's figure
    assert b_first == platform_first == 0.0  # their own buckets: nothing to wait for
    assert rl.on_rate_limited(CREATE, "global-rate", "acct_a") == f"{GLOBAL}@acct_a"
    assert rl.rate(f"{GLOBAL}@acct_a") == pytest.approx(3.5)
    assert rl.rate(GLOBAL) == 10 and rl.rate(f"{GLOBAL}@acct_b") == 5
    assert rl.on_rate_limited(CREATE, "endpoint-rate", "acct_b") == f"{CREATE}@acct_b"

    held = threading.Event()
    release = threading.Event()
    entered: list[str] = []

    def hold(account: str) -> None:
        with rl.slot(UPDATE, account):
            entered.append(account)
            if len(entered) >= 2:
                held.set()
            release.wait(5)

    # concurrency 8: an account holds at most 8 // 4 = 2 slots; a third request of it
    # waits while another account's goes through.
    threads = [threading.Thread(target=hold, args=("acct_a",)) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert held.wait(5)
    time.sleep(0.05)
    assert entered.count("acct_a") == 2
    other = threading.Thread(target=hold, args=("acct_b",))
    other.start()
    deadline = time.monotonic() + 5
    while "acct_b" not in entered and time.monotonic() < deadline:
        time.sleep(0.01)
    assert entered.count("acct_b") == 1 and entered.count("acct_a") == 2
    release.set()
    for thread in [*threads, other]:
        thread.join(5)
    assert entered.count("acct_a") == 3
