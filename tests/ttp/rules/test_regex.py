"""`pattern` semantics: Python `re` with re.ASCII, run by RE2 through an exact translation."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decnet.ttp.rules.regex import compile_search, translate
from tests.ttp.engine.strategies import regexes, texts


def reference(pattern: str, text: str, ignore_case: bool = False) -> bool:
    flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
    return re.search(pattern, text, flags) is not None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regexes(), text=texts(), ignore_case=st.booleans())
def test_re2_translation_agrees_with_python_re(pattern: str, text: str,
                                               ignore_case: bool) -> None:
    compiled = compile_search(pattern, ignore_case=ignore_case)
    assert not compiled.is_fallback, compiled.reason
    assert compiled.search(text) == reference(pattern, text, ignore_case)
    if text and not compiled.needs_fallback(text):
        # the RE2 program alone, without any routing, is exact here
        assert compiled.search_bytes(text.encode()) == reference(pattern, text, ignore_case)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regexes(fallback=True), text=texts(), ignore_case=st.booleans())
def test_fallback_patterns_agree_with_python_re(pattern: str, text: str,
                                                ignore_case: bool) -> None:
    compiled = compile_search(pattern, ignore_case=ignore_case)
    assert compiled.search(text) == reference(pattern, text, ignore_case)


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    (r"a\sb", "a\x0bb", True),          # Python's \s has \v, RE2's does not
    (r"a\sb", "a\x1cb", False),         # ASCII \s: no information separators
    (r"\d", "\u0663", False),           # ASCII digits only
    (r"\w", "é", False),                # ASCII word characters only
    (r"caf\b", "café", True),           # ASCII word boundary
    (r"ab$", "ab\n", True),             # `$` matches before a final newline
    (r"ab$", "ab\n\n", False),
    (r"ab$\n", "ab\n", True),
    (r"a$.b", "a\nxb", False),          # `$` before more pattern: newline-sensitive
    (r"\B", "", False),                 # Python's \B never matches empty text
    (r"x|\B", "", False),
    (r"\B", "0;0\u00e90", False),        # RE2 alone finds \B inside the bytes of é
    (r"\B", "ab\u00e9", True),
    (r"\Z", "", True),
    (r"(?m)^b", "a\nb", True),
    (r"(?m)a$", "a\nb", True),
    (r"(?s)a.b", "a\nb", True),
    (r"a.b", "a\nb", False),
    (r"(?i)k", "\u212a", False),        # ASCII case folding: no Kelvin sign
    (r"(?i)s", "\u017f", False),
    (r"(?i)[a-c]", "B", True),
    (r"(?i)[^a]", "A", False),
    (r"a{2,}?", "aa", True),
])
def test_known_engine_differences_follow_python(pattern: str, text: str,
                                                expected: bool) -> None:
    assert reference(pattern, text) is expected
    assert compile_search(pattern).search(text) is expected


@pytest.mark.parametrize(("pattern", "construct"), [
    (r"(?<!x)a", "lookahead/lookbehind"),
    (r"(?=a)a", "lookahead/lookbehind"),
    (r"(a)\1", "backreference"),
    (r"(a)?(?(1)a|b)", "conditional"),
    (r"(?>a+)b", "atomic group"),
    (r"a++b", "possessive"),
    (r"a{1001}", "repeat count over 1000"),
])
def test_what_re2_cannot_run_is_a_warned_fallback(pattern: str, construct: str) -> None:
    compiled = compile_search(pattern, rule_id="R0099")
    assert compiled.is_fallback and compiled.engine == "pcre2-bounded"
    assert compiled.warning is not None
    assert "rule R0099" in compiled.warning and construct in compiled.warning


def test_a_pattern_re2_refuses_is_a_warned_fallback_named_in_a_sentence() -> None:
    compiled = compile_search(r"(?:a{1000}){2}", rule_id="R0099")
    assert compiled.is_fallback and compiled.warning is not None
    assert "is refused by RE2 (invalid repetition size: {2}); it is searched by PCRE2" \
        in compiled.warning
    assert "uses RE2" not in compiled.warning
    assert compiled.search("a" * 2000) and not compiled.search("a" * 1999)


def test_invalid_python_regex_is_an_error() -> None:
    with pytest.raises(re.error):
        compile_search("a(b")
    with pytest.raises(re.error):
        compile_search(r"\p{L}")  # RE2 syntax, not Python's


def test_translation_is_plain_re2_syntax() -> None:
    translation = translate(r"\bwget\s+\S+$")
    assert translation.source is not None and translation.reason is None
    assert not translation.newline_sensitive
    assert translate(r"a$b").newline_sensitive
    assert translate(r"a(?<=a)b").source is None
    assert translate(r"a(?=b)c").source is None


def test_lone_surrogates_are_read_as_replacement_characters() -> None:
    compiled = compile_search(r"a.b")
    assert compiled.search("a\ud800b") is True
    assert compiled.search("a\ud800\ud800b") is False
    assert compile_search("a\ufffdb").search("a\udfffb") is True
