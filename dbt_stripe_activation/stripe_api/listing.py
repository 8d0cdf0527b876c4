"""Reading a whole collection: page by page, or in parallel by `created` ranges, 100 objects
a read, each object once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from .errors import StripeReadError

PAGE_SIZE = 100  # Stripe's largest page: one read per 100 objects
# Pieces of a parallel listing hold about this many pages each (by the first page's density).
_PAGES_PER_PIECE = 4
# A first page whose objects were created within this many seconds (an import, a burst)
# says nothing useful about density: the range is paged one page after another.
_MIN_SPAN_SECONDS = 60

# One list request: its params -> the page's objects (as dicts) and whether more follow.
ReadPage = Callable[[dict[str, Any]], tuple[list[dict[str, Any]], bool]]


def pages(read_page: ReadPage, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every object the params select, one page after another."""
    starting_after: str | None = None
    while True:
        page_params: dict[str, Any] = {**params, "limit": PAGE_SIZE}
        if starting_after:
            page_params["starting_after"] = starting_after
        items, has_more = read_page(page_params)
        yield from items
        if not has_more or not items:
            return
        starting_after = items[-1]["id"]


def parallel_pages(read_page: ReadPage, workers: int,
                   notice: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Every object, listed by up to `workers` requests at once.

    Stripe lists newest first and filters on `created`; nothing says in advance how the
    objects spread over time. So a range's first page measures their density (the span of
    its 100 `created` values): below it, `workers` pieces of about `_PAGES_PER_PIECE` pages
    each are listed in parallel, and an open-ended oldest piece that finds more does the
    same again. A piece past the oldest object costs one empty read and ends; a page of
    objects created within a minute is followed page by page (no density to go by).
    Boundaries are inclusive on both sides and objects are kept by id, so none is lost or
    counted twice, whatever order a page comes in. Reads: about ceil(N/100), plus one per
    piece.

    What it assumes is checked on the pages it reads, since other servers (localstripe,
    which many teams run in CI) do not behave so: a first page that is not newest first is
    followed page by page (ranges cut below it would leave the newer objects out), and a
    server that refuses `created` is read again page by page. Each case calls `notice`.
    """
    seen: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    refused: list[StripeReadError] = []

    def list_range(low: int | None, high: int | None) -> list[tuple[int | None, int | None]]:
        """Page one range; an open-ended one that finds more returns its pieces."""
        created: dict[str, int] = {}
        if low is not None:
            created["gte"] = low
        if high is not None:
            created["lte"] = high
        params: dict[str, Any] = {"limit": PAGE_SIZE, **({"created": created}
                                                           if created else {})}
        first = True
        while True:
            try:
                items, has_more = read_page(dict(params))
            except StripeReadError as exc:
                if not created or exc.status != 400:
                    raise
                refused.append(exc)  # the filter, not the request: read it page by page
                return []
            with lock:
                for item in items:
                    seen.setdefault(item["id"], item)
            if not has_more or not items:
                return []
            if first and low is None:
                # Objects without `created` (an invoice item has `date`) have no ranges.
                stamps = [int(item["created"]) for item in items if "created" in item]
                if len(stamps) == len(items):
                    if not _newest_first(stamps):
                        notice("lists oldest first (Stripe lists newest first)")
                    elif max(stamps) - min(stamps) >= _MIN_SPAN_SECONDS:
                        return _pieces(max(stamps), min(stamps), workers)
            first = False
            params["starting_after"] = items[-1]["id"]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stripe-list") as pool:
        pending = {pool.submit(list_range, None, None)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                for low, high in future.result():
                    pending.add(pool.submit(list_range, low, high))
    if refused:
        notice(f"refused the `created` filter ({refused[0]})")
        for item in pages(read_page, {}):
            seen.setdefault(item["id"], item)
    return list(seen.values())


def _newest_first(stamps: list[int]) -> bool:
    return all(newer >= older for newer, older in zip(stamps, stamps[1:], strict=False))


def _pieces(newest: int, oldest_seen: int, workers: int) -> list[tuple[int | None, int | None]]:
    """The rest of an open-ended range whose first page went from `newest` down to
    `oldest_seen`: that span and later again (its objects are read once more, a page at
    most, so no order is assumed), `workers` pieces of about _PAGES_PER_PIECE pages at the
    page's density below it, and the oldest part, open-ended."""
    span = max(newest - oldest_seen, 1) * _PAGES_PER_PIECE
    ranges: list[tuple[int | None, int | None]] = [(oldest_seen, newest)]
    high = oldest_seen
    for _ in range(workers):
        low = high - span
        if low <= 0:
            break
        ranges.append((low, high))
        high = low  # inclusive both sides: an object on a boundary is read twice, kept once
    ranges.append((None, high))
    return ranges
