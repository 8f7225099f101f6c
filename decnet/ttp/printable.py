"""Untrusted text made safe for one log line or one terminal line.

A file name or a field may hold a newline (which would forge a second log line) or a
terminal escape; `printable` writes every control character as a Python-style escape
(`\\n`, `\\x1b`, `\\u2028`) and leaves all other text alone.
"""

from __future__ import annotations

from typing import Final

_CONTROLS: Final = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES: Final = str.maketrans({code: repr(chr(code))[1:-1] for code in _CONTROLS})


def printable(text: str) -> str:
    """`text` with its control characters (C0, DEL, C1, line/paragraph separators) escaped."""
    return text.translate(_ESCAPES)
