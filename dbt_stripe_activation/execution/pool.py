"""The scheduler: rows go to a thread pool from the caller's thread, at most a bound of
them unfinished, and come back to that thread as they finish. Memory is bounded by the
bound, not the model, and every write to the state happens on one thread."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RowPool(Generic[T]):
    """A bounded thread pool whose finished tasks are handed to `on_done` on the submitting
    thread, in the order they finish. A task's exception is raised there after every other
    finished task was handed over (a landed create must reach the state even when a sibling
    failed the run); leaving the block on an error sets `aborted` and collects what is still
    in flight before the pool shuts down."""

    def __init__(self, *, workers: int, max_in_flight: int, name: str,
                 on_done: Callable[[T], None], on_collected: Callable[[], None]) -> None:
        self.aborted = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._max_in_flight = max_in_flight
        self._on_done = on_done
        self._on_collected = on_collected
        # Finished tasks arrive on a queue (a done-callback each): O(1) per task, where
        # waiting on the set in flight would walk all of them for every one.
        self._finished: queue.SimpleQueue[Future[T]] = queue.SimpleQueue()
        self._in_flight = 0

    def submit(self, task: Callable[..., T], *args: Any) -> None:
        """Start a task; first wait for one to finish when the bound is reached."""
        self._executor.submit(task, *args).add_done_callback(self._finished.put)
        self._in_flight += 1
        if self._in_flight >= self._max_in_flight:
            self._drain(block=True)

    def _drain(self, block: bool) -> None:
        finished: set[Future[T]] = {self._finished.get()} if block else set()
        while True:
            try:
                finished.add(self._finished.get_nowait())
            except queue.Empty:
                break
        self._in_flight -= len(finished)
        self._collect(finished)

    def _collect(self, futures: set[Future[T]]) -> None:
        failure: BaseException | None = None
        for future in futures:
            error = future.exception()
            if error is not None:
                failure = failure or error
                continue
            self._on_done(future.result())
        self._on_collected()
        if failure is not None:
            raise failure

    def __enter__(self) -> RowPool[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                while self._in_flight:
                    self._drain(block=True)
        finally:
            if self._in_flight:
                self.aborted.set()
                last: set[Future[T]] = set()
                while self._in_flight:
                    last.add(self._finished.get())
                    self._in_flight -= 1
                with contextlib.suppress(Exception):  # the first failure is raising
                    self._collect(last)
            self._executor.shutdown(wait=True)
