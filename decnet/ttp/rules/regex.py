"""The regex engine behind `pattern`: Python `re` syntax, run by RE2 in linear time.

Semantics. A rule's pattern means what Python's `re` makes of it with the
`re.ASCII` flag (plus `re.IGNORECASE` under `case_insensitive: true`): `\\d`, `\\w`,
`\\s`, `\\b` and case folding are ASCII, as they are in RE2. That Python regex is
the *reference*; everything faster must agree with it on every input.

Translation. The pattern is parsed by Python's own parser (so only valid Python
regexes load) and re-emitted from the parse tree as an RE2 pattern that matches
exactly the same texts: every character class is spelled out as explicit code
point ranges (so `\\s` keeps `\\v`, case folding stays ASCII), `$` becomes
`\\n?\\z` where nothing follows it and `(?m:$)` elsewhere (exact unless the text
has a newline before its last character), `\\B` stays `\\B` (exact on ASCII text;
RE2 also finds it inside a multi-byte character) — `CompiledPattern.needs_fallback`
names the texts where RE2 cannot decide; lazy quantifiers become greedy, a positive
lookahead at the end of the pattern is matched as plain text and a positive
lookbehind at its start too (a search only asks whether a match exists).
Other lookaround, backreferences, conditionals, atomic groups, possessive
quantifiers and repeat counts over 1000 have no RE2 form: such a pattern is a
*fallback* pattern, translated just as exactly into PCRE2 syntax and searched by
PCRE2 within a step limit (`decnet.ttp.rules.bounded`); a load-time warning names it.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pcre2
import re2
from re2 import _re2

from decnet.ttp.rules.bounded import BoundedSearch
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
from decnet.ttp.rules.pcre2_syntax import pcre2_source, translate_pcre2

_compiler: Any = importlib.import_module("re._compiler")

#: Flags every rule pattern is compiled with (the reference semantics).
BASE_FLAGS: Final = re.ASCII
#: Largest repeat count RE2 accepts.
RE2_MAX_REPEAT: Final = 1000
#: Memory budget of one compiled RE2 program or set, its DFA cache included (bytes):
#: the cache is flushed when full, so this bounds the memory a hostile input can grow.
RE2_MAX_MEM: Final = 8 << 20

_UNANCHORED: Final = re2._Anchor.UNANCHORED
_c: Any = parser_constants


def re2_options() -> Any:
    """RE2 options every pattern and set of this package uses."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    options.never_capture = True
    return options


@dataclass(frozen=True, slots=True)
class Translation:
    """An RE2 pattern equivalent to a Python pattern, or why there is none."""

    source: str | None
    reason: str | None = None
    #: `$` is used before more pattern: exact only if the text has no newline
    #: before its last character.
    newline_sensitive: bool = False
    #: `\B` is used: RE2 also finds it between the bytes of one non-ASCII character,
    #: so it is exact only on ASCII text.
    non_boundary: bool = False


def translate(pattern: str, flags: int = BASE_FLAGS) -> Translation:
    """Translate a valid Python pattern (parsed with `flags`) into RE2 syntax."""
    return _translate_parsed(parse(pattern, int(flags)))


def _translate_parsed(parsed: Any) -> Translation:
    emitter = _Emitter()
    try:
        source = emitter.sequence(parsed.data, parsed.state.flags, tail=True, head=True)
    except Unsupported as exc:
        return Translation(None, str(exc))
    return Translation(source, None, emitter.newline_sensitive, emitter.non_boundary)


class _Emitter:
    def __init__(self) -> None:
        self.newline_sensitive = False
        self.non_boundary = False

    def sequence(self, items: Sequence[tuple[Any, Any]], flags: int, tail: bool,
                 head: bool = False) -> str:
        last = len(items) - 1
        return "".join(self.item(op, av, flags, tail and i == last, head and i == 0)
                       for i, (op, av) in enumerate(items))

    def item(self, op: Any, av: Any, flags: int, tail: bool, head: bool = False) -> str:
        """RE2 syntax for one node; `tail`/`head`: nothing of the pattern follows/precedes it."""
        folded = flags & FLAG_I
        if op is _c.LITERAL:
            return _literal(av, folded)
        if op is _c.NOT_LITERAL:
            return _not_literal(av, folded)
        if op is _c.ANY:
            return _ANY_DOTALL if flags & FLAG_S else _ANY
        if op is _c.IN:
            return _class(tuple(av), folded)
        if op is _c.BRANCH:
            return "(?:" + "|".join(self.sequence(alt.data, flags, tail, head)
                                    for alt in av[1]) + ")"
        if op is _c.SUBPATTERN:
            _group, add, remove, sub = av
            if (add | remove) & FLAG_U_OR_L:
                raise Unsupported("a local UNICODE/LOCALE flag")
            inner = self.sequence(sub.data, (flags | add) & ~remove, tail, head)
            if len(sub.data) == 1 and sub.data[0][0] is _c.BRANCH:
                return inner  # a branch groups itself already
            return "(?:" + inner + ")"
        if op is _c.ASSERT:
            # Only whether a match exists matters: text a lookahead requires after the
            # end of the match, or a lookbehind before its start, may as well be matched.
            direction, sub = av
            if (direction == 1 and tail) or (direction == -1 and head):
                return "(?:" + self.sequence(sub.data, flags, tail, head) + ")"
        if op is _c.MAX_REPEAT or op is _c.MIN_REPEAT:
            low, high, sub = av
            unbounded = high is _c.MAXREPEAT
            if low > RE2_MAX_REPEAT or (not unbounded and high > RE2_MAX_REPEAT):
                raise Unsupported(f"a repeat count over {RE2_MAX_REPEAT}")
            body = self.sequence(sub.data, flags, tail and high == 1, head and high == 1)
            if len(sub.data) != 1 or sub.data[0][0] not in _ATOMS:
                body = "(?:" + body + ")"  # a single character or class repeats as it is
            if unbounded:
                return body + ("*" if low == 0 else "+" if low == 1 else f"{{{low},}}")
            return body + (f"{{{low}}}" if low == high else f"{{{low},{high}}}")
        if op is _c.AT:
            return self.at(av, flags, tail)
        raise Unsupported(_UNSUPPORTED.get(str(op), str(op).lower().replace("_", " ")))

    def at(self, where: Any, flags: int, tail: bool) -> str:
        if where is _c.AT_BEGINNING:
            return "(?m:^)" if flags & FLAG_M else r"\A"
        if where is _c.AT_BEGINNING_STRING:
            return r"\A"
        if where is _c.AT_END:
            if flags & FLAG_M:
                return "(?m:$)"
            if tail:
                return r"(?:\n?\z)"
            self.newline_sensitive = True
            return "(?m:$)"
        if where is _c.AT_END_STRING:
            return r"\z"
        if where is _c.AT_BOUNDARY:
            return r"\b"
        if where is _c.AT_NON_BOUNDARY:
            self.non_boundary = True
            return r"\B"
        raise Unsupported(str(where).lower())


#: Nodes emitted as one RE2 atom (a character, an escape or a bracketed class).
_ATOMS: Final = (_c.LITERAL, _c.NOT_LITERAL, _c.IN, _c.ANY)

_UNSUPPORTED: Final = {
    "ASSERT": "a lookahead/lookbehind",
    "ASSERT_NOT": "a negative lookahead/lookbehind",
    "GROUPREF": "a backreference",
    "GROUPREF_EXISTS": "a conditional group",
    "ATOMIC_GROUP": "an atomic group",
    "POSSESSIVE_REPEAT": "a possessive quantifier",
}


@functools.lru_cache(maxsize=4096)
def _literal(code: int, folded: int) -> str:
    if not folded and code < 0x80 and chr(code).isalnum():
        return chr(code)
    return char_class(fold([(code, code)], folded))


@functools.lru_cache(maxsize=1024)
def _not_literal(code: int, folded: int) -> str:
    return char_class(complement(fold([(code, code)], folded)))


@functools.lru_cache(maxsize=4096)
def _class(items: tuple[tuple[Any, Any], ...], folded: int) -> str:
    return char_class(class_ranges(items, folded))


def char_class(ranges: Ranges) -> str:
    """RE2 syntax for a set of code points (surrogates dropped: no UTF-8 text has them)."""
    parts: list[str] = []
    single = False
    for low, high in normalize(ranges):
        for a, b in without_surrogates(low, high):
            single = a == b
            parts.append(code_point(a) if single else code_point(a) + "-" + code_point(b))
    if not parts:
        return r"[^\x{0}-\x{10ffff}]"
    if len(parts) == 1 and single:
        return parts[0]
    return "[" + "".join(parts) + "]"


def code_point(code: int) -> str:
    """One code point in RE2 syntax, as short as is exact anywhere in a pattern: letters
    and digits as they are, other ASCII punctuation escaped, the rest in hex."""
    if code < 0x80:
        char = chr(code)
        if char.isalnum():
            return char
        if 0x21 <= code <= 0x7E and char != "_":
            return "\\" + char
    return f"\\x{code:02x}" if code < 0x100 else f"\\x{{{code:x}}}"


_ANY: Final = char_class(complement([(0x0A, 0x0A)]))
_ANY_DOTALL: Final = char_class([(0, MAX_CODE_POINT)])


def python_flags(ignore_case: bool) -> int:
    # plain ints: `re`'s own parser and compiler test flags on every node, and
    # RegexFlag enum arithmetic there is several times slower
    return int(BASE_FLAGS) | (FLAG_I if ignore_case else 0)


def text_is_utf8_safe(text: str) -> bool:
    """Whether `text` encodes to UTF-8 (no lone surrogates), so RE2 and PCRE2 can read it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def readable(text: str) -> str:
    """`text` with each lone surrogate read as U+FFFD (no regex engine here reads them).

    Lone surrogates are no UTF-8 text: the JSON readers refuse them, so only a Python
    caller building an `Event` itself can pass one.
    """
    return text if text_is_utf8_safe(text) else _LONE_SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPattern:
    """One `pattern` leaf compiled for RE2 and, where RE2 cannot decide, bounded PCRE2.

    `python` is the reference; `re2_source` (None for a fallback pattern) is its
    exact RE2 translation, which the engine's prefilter puts into combined sets.
    `pcre2` is its exact PCRE2 translation, searched within a step limit: always for a
    fallback pattern, and for the few texts RE2 cannot decide (`needs_fallback`).
    Stand-alone programs are compiled on first use and kept: loading 10,000 rules
    does not pay for them.
    """

    source: str
    ignore_case: bool
    re2_source: str | None
    newline_sensitive: bool
    non_boundary: bool
    matches_empty: bool
    warning: str | None = None
    reason: str | None = field(default=None, repr=False)
    pcre2_source: str | None = field(default=None, repr=False)
    _bounded: BoundedSearch | None = field(default=None, repr=False)
    #: [RE2 program, Python pattern], made on first use (most patterns only ever run
    #: inside a combined set); set through object.__setattr__, the value stays frozen.
    _lazy: list[Any] | None = field(default=None, repr=False)

    def _cached(self, index: int, make: Any) -> Any:
        lazy = self._lazy
        if lazy is None:
            lazy = [None, None]
            object.__setattr__(self, "_lazy", lazy)
        if lazy[index] is None:
            lazy[index] = make()
        return lazy[index]

    @property
    def python(self) -> re.Pattern[str]:
        """Python's compiled pattern (the reference semantics; never run by the engine)."""
        pattern: re.Pattern[str] = self._cached(
            1, lambda: re.compile(self.source, python_flags(self.ignore_case)))
        return pattern

    @property
    def re2(self) -> Any:
        """The compiled RE2 program, or None for a fallback pattern."""
        lazy = self._lazy
        if lazy is not None and lazy[0] is not None:
            return lazy[0]  # the common case first: searched on the hot path
        source = self.re2_source
        if source is None:
            return None
        return self._cached(0, lambda: _re2.RE2(source.encode("utf-8"), re2_options()))

    @property
    def bounded(self) -> BoundedSearch:
        """The step-limited PCRE2 search of this pattern."""
        if self._bounded is None:
            source = self.pcre2_source
            if source is None:
                source = translate_pcre2(self.source, python_flags(self.ignore_case))
            object.__setattr__(self, "_bounded", BoundedSearch(source))
        assert self._bounded is not None
        return self._bounded

    @property
    def engine(self) -> str:
        """`re2`, or `pcre2-bounded` for a fallback pattern."""
        return "pcre2-bounded" if self.re2_source is None else "re2"

    @property
    def is_fallback(self) -> bool:
        return self.re2_source is None

    @property
    def input_sensitive(self) -> bool:
        """Whether RE2's answer must be confirmed on some texts (see `needs_fallback`).

        On those texts RE2 over-approximates (it may find a match Python does not,
        never the reverse), so a miss from a combined set is still exact.
        """
        return self.newline_sensitive or self.non_boundary

    def needs_fallback(self, text: str) -> bool:
        """Whether RE2 cannot decide this pattern on UTF-8-safe `text` (PCRE2 must)."""
        if self.re2_source is None:
            return True
        if self.newline_sensitive and "\n" in text[:-1]:
            return True
        return self.non_boundary and not text.isascii()

    def search(self, text: str) -> bool:
        """Whether the pattern occurs in `text`: exact, within the fallback's step limit."""
        if not text:
            return self.matches_empty
        text = readable(text)
        if not self.needs_fallback(text):
            data = text.encode("utf-8")
            return bool(self.re2.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)
        return self.bounded.search(text)

    def search_bytes(self, data: bytes) -> bool:
        """RE2 search over UTF-8 `data` (only when `needs_fallback` is False)."""
        return bool(self.re2.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)


def compile_search(pattern: str, *, ignore_case: bool = False,
                   rule_id: str | None = None, where: str = "pattern") -> CompiledPattern:
    """Compile `pattern`; raises `re.error` when it is not a valid Python regex or
    cannot be searched within a bound (no RE2 form and no exact PCRE2 form)."""
    flags = python_flags(ignore_case)
    # Parse once: the tree is translated for RE2 and, when Python must decide whether
    # it matches the empty text, compiled by Python's compiler (which does not modify it).
    parsed = parse(pattern, flags)
    translation = _translate_parsed(parsed)
    why = f"uses {translation.reason}, which RE2 cannot run"
    accepted = False
    matches_empty: bool | None = None
    if translation.source is not None:
        check = _re2.RE2(translation.source.encode("utf-8"), re2_options())
        accepted = check.ok()
        if not accepted:
            error = check.error()
            detail = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
            why = f"is refused by RE2 ({detail})"
        elif not translation.non_boundary:
            # on empty text RE2 and Python agree, except for Python's \B quirk
            matches_empty = check.Match(_UNANCHORED, b"", 0, 0)[0][0] >= 0
        del check  # memory: most patterns only ever run inside a combined set
    if matches_empty is None:
        # compiling also reports the errors only Python's compiler finds (a
        # variable-width look-behind)
        matches_empty = _compiler.compile(parsed, flags).search("") is not None
    bounded: BoundedSearch | None = None
    fallback_source: str | None = None
    if not accepted or translation.newline_sensitive or translation.non_boundary:
        try:
            fallback_source = pcre2_source(parsed, flags)
            bounded = BoundedSearch(fallback_source)
        except Unsupported as exc:
            raise re.error(f"{exc} cannot be searched within a bound "
                           f"(RE2 and PCRE2 cannot run it as Python does)") from None
        except pcre2.LibraryError as exc:
            raise re.error(f"PCRE2 cannot run it ({exc})") from None
    warning = None
    if not accepted:
        who = f"rule {rule_id}: " if rule_id else ""
        warning = (f"{who}{where} {pattern!r} {why}; it is searched by PCRE2 within a "
                   f"step limit (bounded fallback)")
    return CompiledPattern(
        source=pattern,
        ignore_case=ignore_case,
        re2_source=translation.source if accepted else None,
        newline_sensitive=translation.newline_sensitive,
        non_boundary=translation.non_boundary,
        matches_empty=matches_empty,
        warning=warning,
        reason=None if accepted else why,
        pcre2_source=fallback_source,
        _bounded=bounded,
    )
