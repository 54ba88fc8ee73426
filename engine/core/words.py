"""Small wording helpers for the lines people read (counts with the right noun)."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 thread', '2 threads' ('1 example', '3 examples'); `many` for irregular nouns."""
    return f"{count:,} {noun if count == 1 else (many or noun + 's')}"
