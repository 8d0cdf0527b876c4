"""Keys as the sync compares them, in Python; macros/util.sql computes the same in SQL."""

from __future__ import annotations

from typing import Any

# The characters the SQL side trims (macros/util.sql `trim_whitespace`): ASCII whitespace.
_KEY_WHITESPACE = " \t\n\x0b\x0c\r"


def normalize_key(value: Any, *, casefold: bool) -> str | None:
    """A key as the sync compares it; None when null or empty.

    Every key is its text with ASCII whitespace trimmed; a case-folded key kind (email) is
    also lowercased, so `Amy@X.com` is `amy@x.com`. The SQL side computes the same thing
    from the same flag (`lower(trim(cast(col as string)))`, macros/util.sql
    `normalized_key`): keep the two identical. Lowercasing agrees with SQL for ASCII; for
    other letters it follows each engine's own case mapping.
    """
    if value is None:
        return None
    # A boolean reads as SQL casts it to text.
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    text = text.strip(_KEY_WHITESPACE)
    if casefold:
        text = text.lower()
    return text or None
