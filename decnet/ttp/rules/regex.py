"""The regex engine behind `pattern`: compiled once, checked at load."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    """A compiled pattern's search predicate, and a load-time warning if any."""

    source: str
    search: Callable[[str], bool]
    engine: str
    warning: str | None = None


def compile_search(pattern: str, *, ignore_case: bool = False) -> CompiledPattern:
    """Compile `pattern` for searching; raises `re.error` when it is not a valid regex."""
    compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    search = compiled.search
    return CompiledPattern(
        source=pattern, search=lambda text: search(text) is not None, engine="re"
    )
