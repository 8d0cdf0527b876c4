"""Client-side rate limiting: paced buckets (global and per endpoint), a concurrency cap, AIMD.

Stripe counts requests per second for the whole account and for each endpoint, and answers 429
above either (docs.stripe.com/rate-limits). A 429 costs a request and a backoff; pacing just
under the limits costs nothing. The limiter paces every request (SDK retries included), and on
a 429 cuts the rate of the scope Stripe names in `Stripe-Rate-Limited-Reason`, then recovers
it additively once the account has been quiet: the classic AIMD of TCP congestion control.

A default can be far above an account's real limit (Stripe does not publish the sandbox's
meter event limits; the defaults assume a tenth of live mode's). Cutting by a factor at a
time would take many seconds of 429s to come down, and a recovery sized to the default would
go straight back up. So each bucket counts the answers Stripe admitted in the last second:
on a 429 the limit is about that count. The bucket learns it, paces just under it at once,
recovers quickly only up to that pace, and probes above it slowly (benchmarks/RESULTS.md,
usage (d)).

Not every 429 is about the pace. A concurrency 429 (`global-concurrency`,
`endpoint-concurrency`) or a `lock_timeout` says too many requests were in flight, or one
object was busy, often because of the account's own application: it costs a retry, never the
rate (the caller counts it as admitted: it passed the rate limiter). A rate 429 whose share of
the answers stays the same after the pace was cut did not follow the pace either (an account
shared with an application that hits the limit, an older API that names no reason): the cut
is undone at once, and 429s at up to that share leave the rate alone while they last; a share
above it for two seconds in a row is a limit again (benchmark (g)). Knows nothing of Stripe's
objects or of dbt.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

GLOBAL = "global"

# A request that got its concurrency slot later than this after its paced time is paced
# again before it is sent (a thread's wake-up under load is late by a few milliseconds).
LATE_SECONDS = 0.025
# A learned limit is paced at this share of it (a 429 there is arrival jitter, not a wrong
# rate); above that pace the rate probes for a higher limit at PROBE_SHARE of it a second.
LEARNED_PACE = 0.98
PROBE_SHARE = 0.01
# Admitted answers are counted over this window: Stripe's limits are per second.
ADMITTED_WINDOW_SECONDS = 1.0
# Before a bucket has a second of answers, refusals of at least this many, and this share of
# the answers admitted so far, are a flood: a pace far above the limit, which is about what
# was admitted (a 10x default meets a sandbox limit within its first tenth of a second).
FLOOD_MIN_REFUSED = 5
FLOOD_SHARE = 0.1
FLOOD_ADMITTED_AFTER = 0.25  # at most this many admitted after the first 429, per 429
# A learned limit is on trial for the seconds after it: FLOOD_MIN_REFUSED 429s or more in a
# second, at a share of the answers within TRIAL_BAND of the share that taught it although the
# pace was cut, did not follow the pace (a real limit refuses a smaller share, or none, under it;
# one that fell further, a larger one). The cut is undone.
TRIAL_BAND = 2.0
TRIAL_SECONDS = 2.0  # after the first second under the learned pace
# 429s seen not to follow the pace: up to this much above their share, they cut nothing while
# they keep coming, and are forgotten after NOISE_MEMORY_SECONDS without one.
NOISE_TOLERANCE = 1.5
NOISE_MARGIN = 0.05
NOISE_MEMORY_SECONDS = 10.0

# Stripe-Rate-Limited-Reason -> which bucket a 429 says is too fast. Concurrency reasons
# (requests in flight) and `resource-specific` (one object or a special endpoint such as
# Search) are not about our pace: no rate change.
_REASON_SCOPE = {
    "global-rate": GLOBAL,
    "endpoint-rate": "endpoint",
}
CONCURRENCY_REASONS = frozenset({"global-concurrency", "endpoint-concurrency"})


def scope_for_reason(reason: str | None) -> str | None:
    """'global', 'endpoint' or None (leave the rates alone) for a 429's reason header.

    No header at all is read as the account's limit: older API answers do not send one.
    """
    if reason is None or not reason.strip():
        return GLOBAL
    return _REASON_SCOPE.get(reason.strip().lower())


def is_concurrency(reason: str | None) -> bool:
    """A 429 for requests in flight, not for their rate."""
    return reason is not None and reason.strip().lower() in CONCURRENCY_REASONS


@dataclass(frozen=True)
class _Trial:
    """A learned limit not yet confirmed: what to undo if the 429s did not follow the pace."""

    at: float
    share: float  # of the answers in the second that taught it, refused
    rate: float  # the pace before it
    learned: float | None  # the limit known before it


@dataclass(frozen=True)
class BucketState:
    """What one bucket allows now, for reports and tests."""

    ceiling: float
    rate: float
    floor: float
    learned: float | None = None


class _Bucket:
    """A GCRA pacer (a token bucket kept as the time of the next free slot) with AIMD."""

    def __init__(self, ceiling: float, floor: float, burst: float, now: float) -> None:
        self.ceiling = ceiling
        self.rate = ceiling
        self.floor = min(floor, ceiling)
        self.burst = burst
        self.next_free = now  # GCRA's "theoretical arrival time"
        self.last_limited = -math.inf
        self.last_decrease = -math.inf
        self.recovered_at = now
        self.admitted: deque[float] = deque()  # when the answers of the last second came
        self.refused: deque[float] = deque()  # when the 429s of the last second came
        self.learned_at = -math.inf
        self.active_since = now  # sending without a pause of a second since then
        self.last_reserved = now
        self.learned: float | None = None  # the limit Stripe showed, once it did
        self.trial: _Trial | None = None
        self.noise = 0.0  # share of the answers refused by 429s that did not follow the pace
        self.noise_until = -math.inf
        self.above_noise_at = -math.inf  # when a second's 429s last rose above that share

    def admit(self, now: float) -> None:
        self.admitted.append(now)
        self._forget(now)

    def refuse(self, now: float) -> None:
        self.refused.append(now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        horizon = now - ADMITTED_WINDOW_SECONDS
        for times in (self.admitted, self.refused):
            while times and times[0] < horizon:
                times.popleft()

    def flood_measure(self, now: float) -> float | None:
        """What was admitted so far, when a bucket without a second of answers is refused
        in a flood; None otherwise (a 429 or a few are jitter, not a measure). A flood is
        nearly every answer refused once the first was: a limit reached admits no more,
        while 429s scattered among admitted answers are not about the pace."""
        self._forget(now)
        admitted, refused = len(self.admitted), len(self.refused)
        if not admitted or refused < max(FLOOD_MIN_REFUSED, FLOOD_SHARE * admitted):
            return None
        first = self.refused[0]
        if FLOOD_ADMITTED_AFTER * refused < sum(1 for at in self.admitted if at >= first):
            return None
        return admitted / ADMITTED_WINDOW_SECONDS

    def refused_share(self, now: float) -> float:
        """Of the answers of the last second, the share refused with a rate 429."""
        self._forget(now)
        refused = len(self.refused)
        return refused / (len(self.admitted) + refused) if refused else 0.0

    def learn(self, limit: float, now: float) -> None:
        """Pace just under the limit Stripe showed (never faster than the pace was), on trial."""
        self.put_on_trial(now)
        self.learned = limit
        self.learned_at = now
        self.rate = max(self.floor, min(self.rate, limit) * LEARNED_PACE)

    def put_on_trial(self, now: float) -> None:
        """Before a cut: what to undo if its 429s turn out not to follow the pace. Cuts in a
        row (a blind one, then what was learned) are one trial: undone to the pace before
        the first."""
        trial = self.trial
        if trial is not None and now - trial.at <= ADMITTED_WINDOW_SECONDS + TRIAL_SECONDS:
            rate, learned = trial.rate, trial.learned
        else:
            rate, learned = self.rate, self.learned
        self.trial = _Trial(now, self.refused_share(now), rate, learned)

    def within_noise(self, now: float) -> bool:
        """A 429 at no more than the share already seen not to follow the pace (or among
        too few to tell: a run's last requests)."""
        if now >= self.noise_until:
            return False
        band = max(self.noise * NOISE_TOLERANCE, self.noise + NOISE_MARGIN)
        if self.refused_share(now) > band and len(self.refused) >= FLOOD_MIN_REFUSED:
            return False
        self.noise_until = now + NOISE_MEMORY_SECONDS
        return True

    def acquitted(self, now: float) -> bool:
        """The trial's verdict, once a second paced under the learned limit has passed: 429s
        at about the share that taught it did not follow the pace. The cut is undone and
        their share remembered as noise."""
        trial = self.trial
        if trial is None or not 0 <= now - trial.at - ADMITTED_WINDOW_SECONDS <= TRIAL_SECONDS:
            return False
        share = self.refused_share(now)
        if (len(self.refused) < FLOOD_MIN_REFUSED
                or not trial.share / TRIAL_BAND <= share <= trial.share * TRIAL_BAND):
            return False
        self.trial = None
        self.learned = trial.learned
        self.rate = max(self.rate, trial.rate)
        self.noise, self.noise_until = share, now + NOISE_MEMORY_SECONDS
        return True

    def admitted_rate(self, now: float) -> float | None:
        """Answers Stripe admitted over the last second; None unless the bucket has been
        sending for all of it (one just started, or resumed after a pause, has no measure)."""
        if now - self.active_since < ADMITTED_WINDOW_SECONDS:
            return None
        self._forget(now)
        return len(self.admitted) / ADMITTED_WINDOW_SECONDS

    def earliest(self, now: float) -> float:
        tolerance = (self.burst - 1.0) / self.rate
        return max(now, self.next_free - tolerance)

    def take(self, at: float, now: float) -> None:
        self.next_free = max(self.next_free, at) + 1.0 / self.rate
        if now - self.last_reserved > ADMITTED_WINDOW_SECONDS:
            self.active_since = now
        self.last_reserved = now


class RateLimiter:
    """Thread-safe pacing for many worker threads.

    `slot(endpoint)` waits for a concurrency slot and for a free slot in both the global and
    the endpoint bucket, then holds the concurrency slot while the request runs. Reservations
    are made under a lock; the waiting happens outside it.
    """

    def __init__(
        self,
        global_rps: float,
        endpoint_rps: float,
        concurrency: int,
        *,
        endpoint_overrides: Mapping[str, float] | None = None,
        separate_pools: Mapping[str, float] | None = None,
        pool_concurrency: int = 64,
        burst: float = 1.0,
        # Gentle cuts, quick recovery: the pacer already runs just under the published limit,
        # so an isolated 429 is jitter, not a wrong rate (benchmarks/RESULTS.md: 0.7 and a
        # 2 s quiet period cost ~15% of a test-mode sync's throughput).
        decrease_factor: float = 0.85,
        floor_rps: float = 1.0,
        quiet_seconds: float = 1.0,
        recovery_rps_per_second: float | None = None,
        decrease_cooldown_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        account_rps: float | None = None,
        account_concurrency: int | None = None,
    ) -> None:
        if global_rps <= 0 or endpoint_rps <= 0:
            raise ValueError("rates must be positive")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        self.concurrency = concurrency
        self._endpoint_rps = endpoint_rps
        self._overrides = dict(endpoint_overrides or {})
        # Endpoints with a limit of their own that the account's global limit does not count
        # (Stripe's meter events): paced by their endpoint bucket alone, with slots of their
        # own so a stream of events never waits behind the account's other requests.
        self._separate = dict(separate_pools or {})
        self._overrides.update(self._separate)
        self._pool_slots = threading.BoundedSemaphore(max(1, pool_concurrency))
        self._burst = max(1.0, burst)
        self._decrease = decrease_factor
        self._floor = floor_rps
        self._quiet = quiet_seconds
        self._recovery = recovery_rps_per_second
        self._cooldown = decrease_cooldown_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self.in_flight = 0  # requests holding a slot now (read without the lock: a gauge)
        self.max_in_flight = 0
        self.waiting = 0  # threads waiting for their paced time or a slot
        self._buckets: dict[str, _Bucket] = {GLOBAL: self._new_bucket(global_rps)}
        # Stripe Connect: Stripe measures each connected account's requests against that
        # account's own limits, so each gets its buckets (`scope@acct_...`), paced at
        # `account_rps`, and at most `account_concurrency` slots, so that one slow or
        # rate-limited account never holds every slot while the others wait.
        self._account_rps = account_rps or global_rps
        self._account_concurrency = account_concurrency or max(1, concurrency // 4)
        self._account_slots: dict[str, threading.BoundedSemaphore] = {}

    def _new_bucket(self, ceiling: float) -> _Bucket:
        return _Bucket(ceiling, self._floor, self._burst, self._clock())

    def _bucket(self, scope: str) -> _Bucket:
        bucket = self._buckets.get(scope)
        if bucket is None:
            base, _, account = scope.partition("@")
            if base == GLOBAL:
                ceiling = self._account_rps
            else:
                ceiling = self._overrides.get(base, self._endpoint_rps)
            bucket = self._buckets[scope] = self._new_bucket(ceiling)
        return bucket

    def _scopes(self, endpoint: str, account: str | None) -> list[str]:
        """The buckets a request counts against: its account's global and endpoint ones
        (the platform's for account None); a separate pool's endpoint alone."""
        suffix = f"@{account}" if account else ""
        if endpoint in self._separate:
            return [endpoint + suffix]
        return [GLOBAL + suffix, endpoint + suffix]

    def _recover(self, bucket: _Bucket, now: float) -> None:
        """Additive increase: after `quiet_seconds` without a 429, grow the rate linearly;
        with a learned limit, quickly up to its pace, then slowly (a probe) above it."""
        if bucket.rate >= bucket.ceiling:
            bucket.recovered_at = now
            return
        start = max(bucket.last_limited + self._quiet, bucket.recovered_at)
        if now <= start:
            return
        elapsed = now - start
        bucket.recovered_at = now
        learned = bucket.learned
        scale = bucket.ceiling if learned is None else learned
        pace = bucket.ceiling if learned is None else min(bucket.ceiling, learned * LEARNED_PACE)
        if bucket.rate < pace:  # the quick step, 10% of the limit a second
            per_second = self._recovery or max(0.5, 0.1 * scale)
            gained = min(pace - bucket.rate, elapsed * per_second)
            bucket.rate += gained
            elapsed -= gained / per_second
        if learned is not None and elapsed > 0:  # above a learned limit's pace: a probe
            probe = max(0.05, PROBE_SHARE * learned)
            bucket.rate = min(bucket.ceiling, bucket.rate + elapsed * probe)

    def reserve(self, endpoint: str, account: str | None = None) -> float:
        """Take the next free slot in the global and the endpoint bucket; the time to send at.

        Does not wait and does not take a concurrency slot: `acquire` and `slot` do.
        """
        with self._lock:
            now = self._clock()
            buckets = [self._bucket(scope) for scope in self._scopes(endpoint, account)]
            for bucket in buckets:
                self._recover(bucket, now)
            at = max(bucket.earliest(now) for bucket in buckets)
            for bucket in buckets:
                bucket.take(at, now)
            return at

    def acquire(self, endpoint: str, account: str | None = None) -> None:
        """Wait (without holding the lock) until a request to `endpoint` may be sent."""
        delay = self.reserve(endpoint, account) - self._clock()
        if delay > 0:
            self._sleep(delay)

    @contextmanager
    def slot(self, endpoint: str, account: str | None = None) -> Iterator[None]:
        """Hold a concurrency slot for one request, sent at its paced time (a connected
        account's request first takes one of that account's own slots)."""
        if account is None:
            with self._slot(endpoint, None):
                yield
            return
        with self._lock:
            own = self._account_slots.get(account)
            if own is None:
                own = threading.BoundedSemaphore(self._account_concurrency)
                self._account_slots[account] = own
        with own, self._slot(endpoint, account):
            yield

    @contextmanager
    def _slot(self, endpoint: str, account: str | None) -> Iterator[None]:
        """Wait for the paced time, then for a concurrency slot: a thread waiting for its
        time holds no slot, so one account's queue of paced requests never keeps the slots
        from another account's requests that are due (benchmark f: 0.81 -> 0.85 of the
        limit). A request that then waited for a slot past its time is paced again: slots
        freed together must not send the requests that waited for them as a burst. One that
        found a slot free is sent however late its thread woke (a busy interpreter wakes
        threads late): pacing it again would waste its slot (usage (d): 84 of 97 a second)."""
        slots = self._pool_slots if endpoint in self._separate else self._slots
        with self._lock:
            self.waiting += 1
        at = self.reserve(endpoint, account)
        delay = at - self._clock()
        if delay > 0:
            self._sleep(delay)
        if not slots.acquire(blocking=False):
            slots.acquire()
            if self._clock() - at > LATE_SECONDS:
                self.acquire(endpoint, account)
        with self._lock:
            self.waiting -= 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
            slots.release()

    def on_admitted(self, endpoint: str, account: str | None = None) -> None:
        """A request of `endpoint` was answered, not refused with a 429: counted by each
        bucket it was paced by, so that a 429 can tell how much Stripe admits."""
        with self._lock:
            now = self._clock()
            for scope in self._scopes(endpoint, account):
                self._bucket(scope).admit(now)

    def on_rate_limited(
        self, endpoint: str, reason: str | None, account: str | None = None
    ) -> str | None:
        """Multiplicative decrease for the scope a 429 names; the bucket charged, or None
        (a concurrency or resource 429: the caller counts it as admitted).

        One cut per `decrease_cooldown_seconds` and bucket: the requests already in flight when
        the limit was hit answer 429 together, and are one congestion signal, not many. With a
        second of answers counted, the limit is about what Stripe admitted in it (a refusal
        means that second was full): the bucket learns it and paces just under it at once,
        however far above it the pace was. Before that, a flood of refusals after a blind cut
        says the same of what was admitted so far. A learned limit is on trial: 429s that keep
        their share under the lower pace undo it (see `_Bucket.acquitted`), and while 429s
        come at no more than that share they cut nothing and do not hold back the recovery.
        """
        scope = scope_for_reason(reason)
        if scope is None:
            return None
        scopes = self._scopes(endpoint, account)
        key = scopes[0] if scope == GLOBAL else scopes[-1]
        with self._lock:
            now = self._clock()
            bucket = self._bucket(key)
            self._recover(bucket, now)
            bucket.refuse(now)
            if bucket.within_noise(now):
                return key
            bucket.last_limited = now
            bucket.recovered_at = now
            if now - bucket.last_decrease >= self._cooldown:
                admitted = bucket.admitted_rate(now)
                if admitted and bucket.acquitted(now):
                    pass  # the pace was not their cause: the cut is undone, nothing learned
                elif admitted and now < bucket.noise_until and (
                        now - bucket.above_noise_at > 2 * self._cooldown):
                    # Above the known noise for the first second: a limit if it lasts.
                    bucket.above_noise_at = now
                elif admitted:
                    bucket.learn(admitted, now)
                else:  # no second of answers: no measure, a blind cut
                    bucket.put_on_trial(now)
                    bucket.rate = max(bucket.floor, bucket.rate * self._decrease)
                bucket.last_decrease = now
            elif bucket.learned_at < bucket.last_decrease:
                # Within a blind cut's cooldown: a flood of refusals is a measure already.
                flood = bucket.flood_measure(now)
                if flood:
                    bucket.learn(flood, now)
        return key

    def state(self, scope: str = GLOBAL) -> BucketState:
        """The ceiling and current rate of 'global' or an endpoint ('POST /v1/customers')."""
        with self._lock:
            bucket = self._bucket(scope)
            self._recover(bucket, self._clock())
            return BucketState(bucket.ceiling, bucket.rate, bucket.floor, bucket.learned)

    def rate(self, scope: str = GLOBAL) -> float:
        return self.state(scope).rate
