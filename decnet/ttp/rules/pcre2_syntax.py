"""Python regex syntax to PCRE2 syntax, exactly: the bounded fallback's translation.

Classes are spelled out as code points (`\\o{...}`: the PCRE2 binding reads
`\\x{...}` JavaScript-style), `^`/`$` as explicit assertions, `\\b`/`\\B` are
PCRE2's own (ASCII word characters without UCP, as in Python's ASCII mode); groups
keep their numbers, so backreferences and conditionals mean what they meant; lazy,
atomic and possessive forms are kept. Matching is never case-folded by PCRE2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from decnet.ttp.rules.parsetree import (
    FLAG_I,
    FLAG_M,
    FLAG_S,
    FLAG_U_OR_L,
    MAX_CODE_POINT,
    Ranges,
    Unsupported,
    class_ranges,
    complement,
    fold,
    normalize,
    parse,
    parser_constants,
    without_surrogates,
)

_c: Any = parser_constants

_ONE_CHARACTER: Final = frozenset((_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN))

#: Largest repeat count PCRE2 accepts.
PCRE2_MAX_REPEAT: Final = 65535


def translate_pcre2(pattern: str, flags: int = int(re.ASCII)) -> str:
    """Translate a valid Python pattern (parsed with `flags`) into PCRE2 syntax.

    Raises `Unsupported` for the one construct PCRE2 cannot match as Python does (a
    case-insensitive backreference: PCRE2 folds non-ASCII letters too) and for repeat
    counts over `PCRE2_MAX_REPEAT`.
    """
    return pcre2_source(parse(pattern, flags), flags)


def pcre2_source(parsed: Any, flags: int) -> str:
    """PCRE2 syntax for an already parsed pattern (see `translate_pcre2`)."""
    return _Emitter().sequence(parsed.data, flags)


class _Emitter:
    """Python parse tree -> PCRE2 syntax."""

    def sequence(self, items: Sequence[tuple[Any, Any]], flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op: Any, av: Any, flags: int) -> str:
        folded = flags & FLAG_I
        if op is _c.LITERAL:
            if not folded and av < 0x80 and chr(av).isalnum():
                return chr(av)
            return pcre2_class(fold([(av, av)], folded))
        if op is _c.NOT_LITERAL:
            return pcre2_class(complement(fold([(av, av)], folded)))
        if op is _c.ANY:
            return pcre2_class([(0, MAX_CODE_POINT)] if flags & FLAG_S else
                               complement([(0x0A, 0x0A)]))
        if op is _c.IN:
            return pcre2_class(class_ranges(tuple(av), folded))
        if op is _c.BRANCH:
            return "(?:" + "|".join(self.sequence(alt.data, flags) for alt in av[1]) + ")"
        if op is _c.SUBPATTERN:
            group, add, remove, sub = av
            if (add | remove) & FLAG_U_OR_L:
                raise Unsupported("a local UNICODE/LOCALE flag")
            body = self.sequence(sub.data, (flags | add) & ~remove)
            return ("(" if group is not None else "(?:") + body + ")"
        if op is _c.MAX_REPEAT or op is _c.MIN_REPEAT or op is _c.POSSESSIVE_REPEAT:
            low, high, sub = av
            unbounded = high is _c.MAXREPEAT
            if low > PCRE2_MAX_REPEAT or (not unbounded and high > PCRE2_MAX_REPEAT):
                raise Unsupported(f"a repeat count over {PCRE2_MAX_REPEAT}")
            body = self.sequence(sub.data, flags)
            if not (len(sub.data) == 1 and sub.data[0][0] in _ONE_CHARACTER
                    and not body.startswith("(")):
                body = "(?:" + body + ")"  # one character repeats stay compact in PCRE2
            count = (f"{{{low},}}" if unbounded else
                     f"{{{low}}}" if low == high else f"{{{low},{high}}}")
            mode = "?" if op is _c.MIN_REPEAT else "+" if op is _c.POSSESSIVE_REPEAT else ""
            return body + count + mode
        if op is _c.ASSERT or op is _c.ASSERT_NOT:
            direction, sub = av
            kind = ("=" if op is _c.ASSERT else "!")
            return ("(?" + ("<" if direction < 0 else "") + kind
                    + self.sequence(sub.data, flags) + ")")
        if op is _c.GROUPREF:
            if folded:
                raise Unsupported("a case-insensitive backreference")
            return f"(?:\\g{{{av}}})"
        if op is _c.GROUPREF_EXISTS:
            group, yes, no = av
            body = self.sequence(yes.data, flags)
            if no is not None:
                body += "|" + self.sequence(no.data, flags)
            return f"(?({group}){body})"
        if op is _c.ATOMIC_GROUP:
            return "(?>" + self.sequence(av.data, flags) + ")"
        if op is _c.AT:
            return _PCRE2_AT[(av, bool(flags & FLAG_M))]
        raise Unsupported(str(op).lower().replace("_", " "))  # pragma: no cover


_PCRE2_AT: Final = {
    (_c.AT_BEGINNING, False): r"\A", (_c.AT_BEGINNING, True): r"(?:\A|(?<=\n))",
    (_c.AT_BEGINNING_STRING, False): r"\A", (_c.AT_BEGINNING_STRING, True): r"\A",
    (_c.AT_END, False): r"(?=\n?\z)", (_c.AT_END, True): r"(?=\n|\z)",
    (_c.AT_END_STRING, False): r"\z", (_c.AT_END_STRING, True): r"\z",
    (_c.AT_BOUNDARY, False): r"\b", (_c.AT_BOUNDARY, True): r"\b",
    (_c.AT_NON_BOUNDARY, False): r"\B", (_c.AT_NON_BOUNDARY, True): r"\B",
}


def pcre2_class(ranges: Ranges) -> str:
    """PCRE2 syntax for a set of code points (surrogates dropped: no UTF-8 text has them)."""
    parts: list[str] = []
    for low, high in normalize(ranges):
        for a, b in without_surrogates(low, high):
            parts.append(f"\\o{{{a:o}}}" if a == b else f"\\o{{{a:o}}}-\\o{{{b:o}}}")
    if not parts:
        return "(?!)"
    if len(parts) == 1 and "-" not in parts[0]:
        return parts[0]
    return "[" + "".join(parts) + "]"
