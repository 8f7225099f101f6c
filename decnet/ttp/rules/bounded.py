"""PCRE2 searches with a step limit: the fallback for what RE2 cannot decide.

A fallback pattern (lookaround, backreference... translated exactly from Python's
syntax by `decnet.ttp.rules.regex`) is searched by PCRE2 as one anchored match,
`\\A(?s:.)*?(?:PATTERN)`, so PCRE2's match limit counts the work of every start
position of the search together, not per position. The limit grows with the text:
`FALLBACK_STEPS_PER_CHAR` steps per character of the text's length class (its length
rounded up to a power of two) plus `FALLBACK_STEPS_BASE`. A search that reaches it,
or the JIT's stack limit (PCRE2's heap limit where there is no JIT), stops and counts
as *no match* for that search only: the next text is searched afresh, with nothing
remembered and nothing started before.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Final

import pcre2

from decnet.ttp.constants import (
    FALLBACK_HEAP_KIB,
    FALLBACK_MAX_TEXT_CHARS,
    FALLBACK_MIN_LENGTH_CLASS,
    FALLBACK_STEPS_BASE,
    FALLBACK_STEPS_PER_CHAR,
)

#: Any code point PCRE2 can read (UTF-8 text has no surrogates).
_ANY: Final = r"[\o{0}-\o{153777}\o{160000}-\o{4177777}]"


@dataclass(slots=True)
class FallbackStats:
    """Process-wide counters of the bounded fallback."""

    #: PCRE2 searches run
    searches: int = 0
    #: searches stopped by the step or memory limit (counted as no match)
    limit_hits: int = 0
    #: texts over `FALLBACK_MAX_TEXT_CHARS`, not searched (no match)
    oversized: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def searched(self) -> None:
        with self._lock:
            self.searches += 1

    def stopped(self) -> None:
        with self._lock:
            self.limit_hits += 1

    def refused(self) -> None:
        with self._lock:
            self.oversized += 1


STATS: Final = FallbackStats()


def length_class(chars: int) -> int:
    """The power of two (at least `FALLBACK_MIN_LENGTH_CLASS`) a text's limit is sized by."""
    return max(FALLBACK_MIN_LENGTH_CLASS, 1 << max(0, chars - 1).bit_length())


def step_limit(chars: int) -> int:
    """PCRE2 match steps a search of a text of `chars` characters may take."""
    return FALLBACK_STEPS_PER_CHAR * length_class(chars) + FALLBACK_STEPS_BASE


def compile_bounded(source: str, limit: int, *, jit: bool = True) -> Any:
    """PCRE2 program: does `source` (PCRE2 syntax) occur in a text, within `limit` steps.

    JIT-compiled where the platform has PCRE2's JIT; interpreted (same limits, plus
    the heap limit) where it has not.
    """
    program = pcre2.compile(
        f"(*LIMIT_MATCH={limit})(*LIMIT_HEAP={FALLBACK_HEAP_KIB})\\A{_ANY}*?(?:{source})",
        pcre2.ASCII, jit=False)
    if jit:
        with contextlib.suppress(pcre2.LibraryError):
            program.jit_compile()
    return program


class BoundedSearch:
    """One PCRE2-syntax pattern, searchable within the documented step limit.

    Programs are compiled per length class on first use and kept (a few per pattern:
    a class covers every text up to twice as long as the class below).
    """

    __slots__ = ("_programs", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._programs: dict[int, Any] = {}
        self._program(FALLBACK_MIN_LENGTH_CLASS)  # load-time check

    def _program(self, chars: int) -> Any:
        key = length_class(chars)
        program = self._programs.get(key)
        if program is None:
            program = self._programs[key] = compile_bounded(self.source, step_limit(chars))
        return program

    def search(self, text: str) -> bool:
        """Whether the pattern occurs in UTF-8-safe `text`; False past a limit (counted).

        The limits are the step limit and the JIT's fixed stack (32 KiB), which a
        search nesting groups several thousand levels deep exhausts.
        """
        if len(text) > FALLBACK_MAX_TEXT_CHARS:
            STATS.refused()
            return False
        STATS.searched()
        try:
            return self._program(len(text)).search(text) is not None
        except pcre2.LibraryError:
            STATS.stopped()
            return False
