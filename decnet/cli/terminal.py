"""Attacker text made safe to print: no control, format or bidi character reaches a terminal."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

#: Unicode categories never written raw: controls (C0, DEL, C1), format characters (bidi
#: overrides, zero-width), separators that break lines, surrogates, private use, unassigned.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def escape_text(text: str, limit: int) -> str:
    """`text` with every hidden character as `\\uXXXX`, cut to `limit` characters (`…`)."""
    out: list[str] = []
    for char in text[:limit]:
        if char.isprintable() and unicodedata.category(char) not in _HIDDEN_CATEGORIES:
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out) + ("…" if len(text) > limit else "")


def json_line(value: Any, limit: int) -> str:
    """`value` as compact JSON, escaped for a terminal and cut to `limit` characters."""
    # the standard encoder, not orjson: it passes lone surrogates through (escaped below)
    text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return escape_text(text, limit)
