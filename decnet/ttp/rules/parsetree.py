"""Python's regex parse tree, read alike by the RE2 and the PCRE2 translation.

Python's own parser decides what a pattern is; both translations walk its tree.
This module holds what they share: the parser, its flags, the code-point sets of
its classes in ASCII mode (spelled out so that neither engine's own idea of `\\s`,
`\\w` or case folding applies) and `Unsupported`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

_parser: Any = importlib.import_module("re._parser")
parser_constants: Any = importlib.import_module("re._constants")
_c: Any = parser_constants

FLAG_I: Final = int(re.IGNORECASE)
FLAG_M: Final = int(re.MULTILINE)
FLAG_S: Final = int(re.DOTALL)
FLAG_U_OR_L: Final = int(re.UNICODE | re.LOCALE)

MAX_CODE_POINT: Final = 0x10FFFF
SURROGATES: Final = (0xD800, 0xDFFF)

Ranges = list[tuple[int, int]]

_DIGIT: Final[Ranges] = [(0x30, 0x39)]
_SPACE: Final[Ranges] = [(0x09, 0x0D), (0x20, 0x20)]
_WORD: Final[Ranges] = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]


def parse(pattern: str, flags: int) -> Any:
    """Python's parse tree of `pattern` (raises `re.error` as `re.compile` would)."""
    return _parser.parse(pattern, flags)


class Unsupported(Exception):
    """A construct a translation cannot express exactly; the message names it."""


def normalize(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sorted, merged, non-overlapping ranges."""
    merged: Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def complement(ranges: Ranges) -> Ranges:
    result: Ranges = []
    start = 0
    for low, high in normalize(ranges):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= MAX_CODE_POINT:
        result.append((start, MAX_CODE_POINT))
    return result


def fold(ranges: Ranges, flags: int) -> Ranges:
    """Under IGNORECASE (ASCII mode), close a set under ASCII letter case."""
    ranges = normalize(ranges)
    if not flags & FLAG_I:
        return ranges
    extra: Ranges = []
    for low, high in ranges:
        for first, last, delta in ((0x41, 0x5A, 0x20), (0x61, 0x7A, -0x20)):
            a, b = max(low, first), min(high, last)
            if a <= b:
                extra.append((a + delta, b + delta))
    return normalize([*ranges, *extra])


def class_ranges(items: Sequence[tuple[Any, Any]], flags: int) -> Ranges:
    negate = False
    ranges: Ranges = []
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            ranges.append((av, av))
        elif op is _c.RANGE:
            ranges.append((av[0], av[1]))
        elif op is _c.CATEGORY:
            ranges.extend(category(av))
        else:  # pragma: no cover - the parser emits nothing else in a class
            raise Unsupported(f"class item {op}")
    folded = fold(ranges, flags)
    return complement(folded) if negate else folded


def category(category: Any) -> Ranges:
    table = {
        _c.CATEGORY_DIGIT: (_DIGIT, False), _c.CATEGORY_NOT_DIGIT: (_DIGIT, True),
        _c.CATEGORY_SPACE: (_SPACE, False), _c.CATEGORY_NOT_SPACE: (_SPACE, True),
        _c.CATEGORY_WORD: (_WORD, False), _c.CATEGORY_NOT_WORD: (_WORD, True),
    }
    if category not in table:  # pragma: no cover
        raise Unsupported(f"category {category}")
    ranges, negated = table[category]
    return complement(ranges) if negated else list(ranges)


def without_surrogates(low: int, high: int) -> list[tuple[int, int]]:
    s_low, s_high = SURROGATES
    if high < s_low or low > s_high:
        return [(low, high)]
    return [(a, b) for a, b in ((low, s_low - 1), (s_high + 1, high)) if a <= b]
