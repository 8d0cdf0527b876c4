"""What a command returns to its caller: the Python API, the CLI and the integrations.

Plain, typed, read-only values built from the results document, so what a caller holds is
exactly what `stripe_sync_results.json` says (redacted, JSON-safe), never engine internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

# The outcomes a row can end in; failures are the ones that make a run not ok.
PROBLEM_OUTCOMES = ("rejected", "failed", "uncertain", "locked")


def problem_lines(entry: Mapping[str, Any], shown: int = 5, label: str = "") -> list[str]:
    """A model's rows that did not sync, as the CLI names them (`rejected 'c1': reason`),
    from its entry in the results document: the first `shown`, then how many more. The
    orchestrators' failure messages share it."""
    rows = [(outcome, row) for outcome in PROBLEM_OUTCOMES for row in entry.get(outcome) or ()]
    lines = [f"  {label}{outcome} {row.get('key')!r}: {row.get('reason')}"
             for outcome, row in rows[:shown]]
    if len(rows) > shown:
        lines.append(f"  ... and {len(rows) - shown} more in the results")
    return lines


@dataclass(frozen=True)
class ModelRun:
    """One model's part of a run."""

    model: str
    unique_id: str
    object: str
    behavior: str
    status: str  # success | partial | error
    counts: Mapping[str, int]
    stripe_reads: int
    stripe_writes: int
    seconds: float
    error: str | None

    @property
    def problems(self) -> int:
        return sum(self.counts.get(name, 0) for name in PROBLEM_OUTCOMES)

    @classmethod
    def from_document(cls, entry: Mapping[str, Any]) -> ModelRun:
        return cls(
            model=entry["model"], unique_id=entry["unique_id"], object=entry["object"],
            behavior=entry["behavior"], status=entry["status"],
            counts=MappingProxyType(dict(entry["counts"])),
            stripe_reads=int(entry["stripe_reads"]), stripe_writes=int(entry["stripe_writes"]),
            seconds=float(entry["seconds"]), error=entry.get("error"),
        )


@dataclass(frozen=True)
class RunResult:
    """A `sync` or `plan`: its exit code (0 ok, 1 rows failed beyond --max-failed-pct,
    2 a model errored), its models and the results document as written to disk."""

    command: str
    run_id: str
    exit_code: int
    models: tuple[ModelRun, ...]
    totals: Mapping[str, int]
    results_path: Path
    document: Mapping[str, Any]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def dry_run(self) -> bool:
        return self.command == "plan"

    def model(self, name: str) -> ModelRun:
        """The part of one model, by name; KeyError when the run did not select it."""
        for model in self.models:
            if model.model == name:
                return model
        raise KeyError(f"model {name!r} was not part of this run "
                       f"({', '.join(m.model for m in self.models) or 'no model'})")

    @classmethod
    def from_document(cls, document: Mapping[str, Any], path: Path) -> RunResult:
        return cls(
            command=document["command"], run_id=document["run_id"],
            exit_code=int(document["exit_code"]),
            models=tuple(ModelRun.from_document(m) for m in document["models"]),
            totals=MappingProxyType(dict(document["totals"])), results_path=path,
            document=MappingProxyType(dict(document)), error=document.get("error"),
        )


@dataclass(frozen=True)
class CheckResult:
    """`check`: whether Stripe and the warehouse answered, and what each said."""

    exit_code: int
    stripe: Mapping[str, Any]
    warehouse: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def as_document(self) -> dict[str, Any]:
        return {"command": "check", "stripe": dict(self.stripe),
                "warehouse": dict(self.warehouse), "exit_code": self.exit_code}


@dataclass(frozen=True)
class ResetResult:
    """`sync --reset-state`: the state rows cleared per model (nothing sent to Stripe)."""

    cleared: Mapping[str, int]
    exit_code: int = 0
