"""A subset of Stripe's Search Query Language for customers (docs.stripe.com/search).

Supported: `field:"value"` (exact, case-insensitive), `field~"value"` (substring, 3+ characters),
`-` negation, `created` with `:`, `>`, `<`, `>=`, `<=` and a number, `metadata["key"]:"value"`,
clauses joined by `AND` or by `OR` (not both, as Stripe requires). Fields: email, name, phone,
metadata, created.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

FIELDS = ("email", "name", "phone", "created", "metadata")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<neg>-)?
        (?P<field>[a-z_]+)(?:\[(?P<mkey>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\])?
        (?P<op>>=|<=|:|~|>|<)
        (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|-?\d+|null)
      |(?P<join>AND|OR)(?=\s)
    )""",
    re.VERBOSE,
)


def _error(detail: str) -> ApiError:
    return ApiError(
        400,
        f"We were unable to parse your search query ({detail}). Try using the format "
        '`metadata["key"]:"value"` to query for metadata or `key:"value"` to query for other '
        "fields.",
        param="query",
        code="parameter_invalid",
    )


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str | int | None
    negate: bool = False
    metadata_key: str | None = None

    def matches(self, doc: Mapping[str, Any]) -> bool:
        return self._matches(doc) != self.negate

    def _matches(self, doc: Mapping[str, Any]) -> bool:
        if self.field == "created":
            created = doc["created"]
            number = self.value
            assert isinstance(number, int)
            return {
                ":": created == number,
                ">": created > number,
                "<": created < number,
                ">=": created >= number,
                "<=": created <= number,
            }[self.op]
        if self.field == "metadata":
            actual = (doc.get("metadata") or {}).get(self.metadata_key)
            if actual is None:
                # Stripe matches keys case-sensitively but values case-insensitively.
                return self.value is None
        else:
            actual = doc.get(self.field)
        if self.value is None:
            return actual is None
        if actual is None:
            return False
        wanted = str(self.value).lower()
        if self.op == "~":
            return wanted in str(actual).lower()
        return str(actual).lower() == wanted


@dataclass(frozen=True)
class Query:
    clauses: tuple[Clause, ...]
    join: str  # "AND" | "OR"

    def matches(self, doc: Mapping[str, Any]) -> bool:
        test: Callable[..., bool] = all if self.join == "AND" else any
        return test(clause.matches(doc) for clause in self.clauses)


def parse(text: str) -> Query:
    clauses: list[Clause] = []
    joins: set[str] = set()
    position = 0
    text = text.strip()
    expect_clause = True
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise _error(f"unexpected input at position {position}")
        position = match.end()
        if match.group("join"):
            if expect_clause:
                raise _error(f"{match.group('join')} needs a clause before it")
            joins.add(match.group("join"))
            expect_clause = True
            continue
        if not expect_clause:
            raise _error("clauses must be joined by AND or OR")
        clauses.append(_clause(match))
        expect_clause = False
    if not clauses or expect_clause:
        raise _error("the query is empty or ends with AND/OR")
    if len(joins) > 1:
        raise _error("AND and OR cannot be combined in one query")
    return Query(tuple(clauses), joins.pop() if joins else "AND")


def _clause(match: re.Match[str]) -> Clause:
    field, op, raw = match.group("field"), match.group("op"), match.group("value")
    if field not in FIELDS:
        raise _error(f"field '{field}' is not supported for customers")
    mkey = match.group("mkey")
    if (field == "metadata") != (mkey is not None):
        raise _error('use metadata["key"] for metadata and no brackets for other fields')
    value: str | int | None
    if raw == "null":
        value = None
    elif raw[0] in "\"'":
        value = _unquote(raw)
    else:
        value = int(raw)
    if field == "created":
        if not isinstance(value, int):
            raise _error("created needs a number")
        if op == "~":
            raise _error("created does not support ~")
    else:
        if op not in (":", "~"):
            raise _error(f"{field} supports only : and ~")
        if isinstance(value, int):
            raise _error(f"{field} needs a quoted string")
        if op == "~" and (value is None or len(value) < 3):
            raise _error("substring search needs at least 3 characters")
    return Clause(
        field=field,
        op=op,
        value=value,
        negate=bool(match.group("neg")),
        metadata_key=_unquote(mkey) if mkey else None,
    )
