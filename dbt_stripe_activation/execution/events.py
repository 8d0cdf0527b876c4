"""Execution for append objects (meter events): every event sent exactly once.

Stripe's meter event stream takes no idempotency key; it de-duplicates events by their
identifier over a rolling 24 hours at least. So the sync state is a ledger with a
write-ahead mark: a chunk of events is marked in flight (committed) before it is sent, and
marked sent once Stripe acknowledges it. After a crash or a lost acknowledgement, an event
still in flight is sent again under its identifier while that is well inside the window
(Stripe drops the duplicate); past it, the event is reported as `uncertain` and sent again
only with `--resend-uncertain`. A row already sent whose values changed is reported as
`already_sent` and never sent again.

Rows stream from the warehouse in chunks; each chunk's requests (100 events each on the
stream, one each on v1) are in flight together under the rate limiter's separate pool, so
memory is bounded by the chunk and the send rate by Stripe's limit.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..objects.params import build_params
from ..planner import desired_values
from ..records import (
    IN_FLIGHT,
    Action,
    DesiredRow,
    DiffRow,
    DiffStatus,
    FieldDiff,
    ModelResult,
    Outcome,
    Rejection,
    RowOutcome,
    RowPlan,
    StateRecord,
)
from ..spec import SyncSpec
from ..stripe_api import StripeWriteError
from .outcomes import ModelExecution


@dataclass(slots=True)
class _Event:
    """One event to send (not frozen: one per row, and a frozen __init__ costs 3x)."""

    row: DiffRow
    params: dict[str, Any]  # the v1 create params (the key included)
    sent: dict[str, Any]  # the mapped values as sent: what the ledger keeps


@dataclass(frozen=True)
class _Chunk:
    """Events marked in flight together (under their own `mark` run id), as requests, and
    their answers to come."""

    mark: str
    requests: list[list[_Event]]
    futures: list[Future[StripeWriteError | None]]

    @property
    def finished(self) -> bool:
        return all(f.done() for f in self.futures)


# Chunks whose requests may be in flight while the next one is read and marked: enough to
# keep the pool busy across a ledger write, few enough to bound memory.
_CHUNKS_IN_FLIGHT = 6
# Acknowledged chunks are written `sent` together: at most this many, or this often.
_ACK_MARKS_MAX = 100
_ACK_INTERVAL_SECONDS = 5.0


class EventSender:
    """Sends one append model's events; called from the engine's thread."""

    def __init__(self, run: ModelExecution, allowed: Callable[[DesiredRow], str | None]) -> None:
        delivery = run.spec.object.delivery
        assert delivery is not None, "an append object declares its delivery"
        self.run = run
        self.delivery = delivery
        self.spec = run.spec
        self.run_id = run.run_id
        self.result: ModelResult = run.result
        self.allowed = allowed  # a requirement's rejection reason, or None
        self.options = run.options
        self.done = 0
        self.chunks = 0
        self.paths = tuple(m.path for m in run.spec.fields)  # what the ledger keeps of an event
        self.acked: list[str] = []  # marks of acknowledged chunks, not yet written `sent`
        self.acked_since = time.monotonic()

    def execute(self, to_plan: int) -> None:
        """Stream, classify, and send chunk by chunk. The ledger (the warehouse, one thread)
        is written here while a pool sends: chunk N's requests are in flight while chunk
        N+1 is read and marked, and N's outcomes are recorded once its requests answer."""
        opts = self.options
        chunk: list[_Event] = []
        chunk_size = max(opts.event_chunk, self.delivery.batch)
        in_flight: deque[_Chunk] = deque()
        with ThreadPoolExecutor(max_workers=max(opts.event_concurrency, 1),
                                thread_name_prefix="stripe-events") as pool:
            try:
                for batch in self.run.warehouse.stream_diff(self.spec, False, opts.batch_size):
                    outcomes: list[tuple[DiffRow, RowPlan, Outcome, str | None]] = []
                    for row in batch:
                        event = self._classify(row, outcomes)
                        if event is not None:
                            chunk.append(event)
                    self._record_all(outcomes)
                    if len(chunk) >= chunk_size:
                        in_flight.append(self._start_chunk(chunk, pool))
                        chunk = []
                    while in_flight and (len(in_flight) > _CHUNKS_IN_FLIGHT
                                         or in_flight[0].finished):
                        self._finish_chunk(in_flight.popleft())
                    self.run.progress(self.done, to_plan)
                if chunk:
                    in_flight.append(self._start_chunk(chunk, pool))
            finally:
                # Every answer that came is recorded, even when the run is failing.
                try:
                    while in_flight:
                        self._finish_chunk(in_flight.popleft())
                finally:
                    self._write_acks()
        self.run.progress(self.done, to_plan)

    # -- one row -------------------------------------------------------------------------

    def _classify(self, row: DiffRow, outcomes: list[Any]) -> _Event | None:
        """An event to send, or the row's outcome appended to `outcomes`."""
        previous = row.previous
        if previous is not None:
            outcome = self._settled(row, previous)
            if outcome is not None:
                outcomes.append(outcome)
                return None
        prepared = desired_values(self.spec, row, self.run.planned)
        if isinstance(prepared, Rejection):
            outcome_of = Outcome.FAILED if prepared.retryable else Outcome.REJECTED
            outcomes.append((row, _replan(_base(row), outcome_of.value, prepared.reason),
                             outcome_of, prepared.reason))
            return None
        refused = self.allowed(prepared)
        if refused is not None:
            outcomes.append((row, _replan(_base(row), Outcome.REJECTED.value, refused),
                             Outcome.REJECTED, refused))
            return None
        values = prepared.values  # a None (clear) is dropped by a create's params
        return _Event(row, build_params(values, create=True, spec=self.spec.object),
                      {path: values.get(path) for path in self.paths})

    def _settled(self, row: DiffRow, previous: StateRecord) -> tuple[Any, ...] | None:
        """The outcome of a row the ledger already knows (sent, reported, or in flight past
        the window), or None when it is to be sent (again)."""
        prior = previous.outcome
        if row.status is DiffStatus.UNSYNCED:
            if not (prior == Outcome.UNCERTAIN.value and self.options.resend_uncertain):
                return (row, _replan(_base(row), previous.outcome, previous.error),
                        Outcome(previous.outcome), previous.error)
        elif prior in (Outcome.SENT.value, Outcome.ALREADY_SENT.value):
            # Sent before: its values changed since. Never sent again.
            return (row, self._already_sent(_base(row), row), Outcome.ALREADY_SENT, None)
        elif prior == IN_FLIGHT and not self.options.resend_uncertain:
            sent_at = previous.synced_at
            age = time.time() - sent_at.timestamp() if sent_at else float("inf")
            if age > self.delivery.resend_window_seconds:
                reason = (
                    f"sent {_ago(age)} ago without an acknowledgement: past Stripe's 24-hour "
                    "de-duplication window, so sending it again could count it twice; "
                    "check the meter in Stripe, then re-run with --resend-uncertain if it "
                    "is missing"
                )
                return (row, _replan(_base(row), Outcome.UNCERTAIN.value, reason),
                        Outcome.UNCERTAIN, reason)
        return None

    def _already_sent(self, base: RowPlan, row: DiffRow) -> RowPlan:
        prepared = desired_values(self.spec, row)
        sent = dict(row.previous.synced_values) if row.previous else {}
        diffs: tuple[FieldDiff, ...] = ()
        if isinstance(prepared, DesiredRow):
            diffs = tuple(FieldDiff(p, sent.get(p), v) for p, v in sorted(prepared.values.items())
                          if str(sent.get(p)) != str(v))
        changed = ", ".join(d.path for d in diffs) or "its values"
        return RowPlan(key_value=row.key_value, action=Action.UNCHANGED, row_hash=row.row_hash,
                       status=row.status, diffs=diffs,
                       reason=f"sent before; {changed} changed since and is not sent again "
                       "(Stripe keeps the first event of an identifier: send a correction "
                       "as a new event with its own identifier)")

    # -- a chunk -------------------------------------------------------------------------

    def _start_chunk(self, chunk: list[_Event], pool: ThreadPoolExecutor) -> _Chunk:
        """Mark the chunk in flight (committed), then put its requests on the pool."""
        spec, per_request = self.spec, self.delivery.batch
        if self.options.event_transport == "stream":
            requests = [chunk[i : i + per_request] for i in range(0, len(chunk), per_request)]
        else:
            requests = [[event] for event in chunk]
        self.chunks += 1
        mark = f"{self.run_id}#{self.chunks}"
        if self.options.dry_run:
            return _Chunk(mark, requests, [])
        # The write-ahead mark: whatever happens next, the next run knows these were sent.
        self.run.warehouse.write_marks(
            mark, spec, [(e.row.key_value, e.row.row_hash, e.sent) for e in chunk],
            IN_FLIGHT, Action.SEND.value, fresh=all(e.row.previous is None for e in chunk))
        return _Chunk(mark, requests, [pool.submit(self._send, events) for events in requests])

    def _send(self, events: list[_Event]) -> StripeWriteError | None:
        """One request; runs on the pool. The error, or None once Stripe acknowledged."""
        gateway = self.run.gateway
        assert gateway is not None
        try:
            if self.options.event_transport == "stream":
                as_event = self.delivery.as_stream_event
                gateway.send_event_stream([as_event(e.params) for e in events])
            else:
                [event] = events
                gateway.create(self.spec.object.service, event.params,
                               f"dsa-event-{event.row.key_value}")
        except StripeWriteError as exc:
            return exc
        return None

    def _finish_chunk(self, chunk: _Chunk) -> None:
        spec = self.spec
        answers: list[StripeWriteError | None] = (
            [f.result() for f in chunk.futures] if chunk.futures else [None] * len(chunk.requests)
        )
        if chunk.futures and all(error is None for error in answers):
            # All acknowledged: counted at once (a sent event is no problem to report, and no
            # key a plan awaits); the marks become `sent` with the next batch of marks.
            sent = sum(len(events) for events in chunk.requests)
            self.done += sent
            self.result.counts[Outcome.SENT.value] += sent
            self.acked.append(chunk.mark)
            if (len(self.acked) >= _ACK_MARKS_MAX
                    or time.monotonic() - self.acked_since >= _ACK_INTERVAL_SECONDS):
                self._write_acks()
            return
        done: list[tuple[DiffRow, RowPlan, Outcome, str | None]] = []
        for events, error in zip(chunk.requests, answers, strict=True):
            for event in events:
                if error is None:
                    done.append((event.row, _sent_plan(spec, event), Outcome.SENT, None))
                elif not error.retryable:
                    done.append((event.row, _sent_plan(spec, event), Outcome.REJECTED,
                                 f"Stripe: {error}"))
                else:
                    # No answer: it may have landed. It stays in flight in the ledger and is
                    # sent again, under its identifier, by the next run.
                    done.append((event.row, _sent_plan(spec, event), Outcome.FAILED,
                                 f"Stripe: {error}; sent again under its identifier by the "
                                 "next run"))
        self._record_all(done, keep_in_flight=True)

    def _write_acks(self) -> None:
        """The acknowledged marks become `sent`: each write scans the model's state once, so
        they are written together, every few seconds, not per chunk. An acknowledged event
        whose mark a crash left in flight is sent again under its identifier by the next
        run, inside Stripe's de-duplication window: exact either way."""
        marks, self.acked = self.acked, []
        self.acked_since = time.monotonic()
        self.run.warehouse.acknowledge(self.run_id, self.spec, marks, Outcome.SENT.value,
                                          Action.SEND.value)

    def _record_all(self, items: Sequence[tuple[DiffRow, RowPlan, Outcome, str | None]],
                    keep_in_flight: bool = False) -> None:
        run, spec = self.run, self.spec
        persist: list[RowOutcome] = []
        for row, plan, outcome, error in items:
            self.done += 1
            run.tally(row.key_value, plan, outcome, error)
            if self.options.dry_run:
                continue
            if row.status is DiffStatus.UNSYNCED and outcome is not Outcome.SENT:
                continue  # re-reported from the state, nothing new to store
            state_outcome = outcome.value
            if keep_in_flight and outcome is Outcome.FAILED:
                state_outcome = IN_FLIGHT  # the mark stays, with its time
            persist.append(RowOutcome(
                key_value=row.key_value, action=plan.action.value, outcome=state_outcome,
                stripe_id=None, row_hash=row.row_hash,
                synced_values=plan.synced_values if outcome is Outcome.SENT else None,
                error=error,
            ))
        if persist:
            run.warehouse.write_outcomes(self.run_id, spec, persist)


def _base(row: DiffRow) -> RowPlan:
    return RowPlan(key_value=row.key_value, action=Action.SEND, row_hash=row.row_hash,
                   status=row.status)


def _sent_plan(spec: SyncSpec, event: _Event) -> RowPlan:
    return RowPlan(key_value=event.row.key_value, action=Action.SEND,
                   row_hash=event.row.row_hash, status=event.row.status,
                   params=event.params, synced_values=event.sent)


def _replan(base: RowPlan, outcome: str, reason: str | None) -> RowPlan:
    action = Action(outcome) if outcome in {a.value for a in Action} else base.action
    return RowPlan(key_value=base.key_value, action=action, row_hash=base.row_hash,
                   status=base.status, reason=reason)


def _ago(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} hours" if hours < 72 else f"{hours / 24:.0f} days"
