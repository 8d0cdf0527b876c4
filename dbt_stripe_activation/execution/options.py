"""What a run may do and how hard it may push: set once from the command line or the API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from ..match import LookupStrategy


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False  # `plan`: match and plan, write nothing anywhere
    full_resync: bool = False
    batch_size: int = 500
    lookup: LookupStrategy = LookupStrategy.AUTO
    concurrency: int = 16
    sample_size: int = 20  # rows whose field diffs the report shows
    flush_every: int = 200  # outcomes per state write-back
    flush_seconds: float = 2.0
    lock_ttl_seconds: int = 3600
    # append (events): the v2 stream (100 events a request) or v1 (one event a request),
    # requests in flight at once, events marked in flight per ledger write, and whether
    # events past the de-duplication window without an acknowledgement are sent again.
    event_transport: str = "stream"
    event_concurrency: int = 32
    event_chunk: int = 2000
    resend_uncertain: bool = False


ProgressCallback = Callable[[str, int, int], None]  # (model, rows done, rows to plan)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
