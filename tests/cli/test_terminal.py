"""Escaping attacker text for a terminal."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from decnet.cli.terminal import escape_text, json_line


def test_controls_bidi_and_separators_are_escaped() -> None:
    assert escape_text("a\x1b[31mb\x7f\x9b\u202e\u200b\u2028\ud800c", 100) == (
        "a\\u001b[31mb\\u007f\\u009b\\u202e\\u200b\\u2028\\ud800c")
    assert escape_text("héllo wörld ✓", 100) == "héllo wörld ✓"


def test_long_text_is_cut() -> None:
    assert escape_text("x" * 10, 4) == "xxxx…"
    assert json_line({"k": "v" * 50}, 10) == '{"k":"vvvv…'


def test_json_of_any_string_prints() -> None:
    assert json_line({"k": "\ud800\x1b"}, 100) == '{"k":"\\ud800\\u001b"}'


@settings(max_examples=200, derandomize=True)
@given(st.text())
def test_nothing_hidden_survives(text: str) -> None:
    shown = escape_text(text, 10_000)
    assert all(c.isprintable() for c in shown)
