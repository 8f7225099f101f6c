"""Terminal-safe text and log lines of the CLI."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from decnet.cli.common import SafeFormatter, safe_text


def test_control_sequences_become_visible_escapes() -> None:
    assert safe_text("\x1b[2Jcleared") == "\\x1b[2Jcleared"
    assert safe_text("\x1b]8;;http://x/\x07a\x1b]8;;\x07") == \
        "\\x1b]8;;http://x/\\x07a\\x1b]8;;\\x07"
    assert safe_text("a\nb\r\tc\x7f\x9b") == "a\\x0ab\\x0d\\x09c\\x7f\\x9b"
    assert safe_text("\u202eevil\u2066") == "\\u202eevil\\u2066"
    assert safe_text("lone \udcff") == "lone \\udcff"
    assert safe_text(42) == "42"


def test_printable_text_is_unchanged() -> None:
    text = "R0001: disabled — noisy [set by alice] é 日本 \\ 🙂"
    assert safe_text(text) == text


@given(st.text())
def test_nothing_a_terminal_acts_on_survives(text: str) -> None:
    shown = safe_text(text)
    assert all(ch.isprintable() or ch == " " or ord(ch) > 0x9f for ch in shown)
    for cp in (*range(0x20), *range(0x7f, 0xa0), *range(0x202a, 0x202f),
               *range(0x2066, 0x206a)):
        assert chr(cp) not in shown
    shown.encode("utf-8")  # no lone surrogate left


def test_log_messages_are_made_safe_but_tracebacks_keep_their_lines() -> None:
    formatter = SafeFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.WARNING, __file__, 1,
                                   "file %s changed", ("evil\nWARNING forged\x1b[2J",), None)
        import sys
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    first, *rest = line.splitlines()
    assert first == "WARNING file evil\\x0aWARNING forged\\x1b[2J changed"
    assert rest and rest[-1] == "ValueError: boom"
