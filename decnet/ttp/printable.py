"""Untrusted text made safe for one log line or one terminal line.

A file name or an event field may hold a newline (which would forge a second log line),
a terminal escape (`ESC[2J` clears the screen, `ESC]8;;` makes a link) or a bidi
override that reorders what is shown. `printable` writes each such code point as its
visible escape (`\\x0a`, `\\x1b`, `\\u202e`) and leaves all other text alone: one table,
one `str.translate`, used by every log line and terminal output of the project.
"""

from __future__ import annotations

from typing import Final

#: C0 controls, DEL, C1 controls (CSI, OSC...), zero-width and directional marks, line and
#: paragraph separators, bidi embeddings, overrides and isolates, invisible operators,
#: the byte-order mark, and lone surrogates (undecodable bytes).
UNSAFE_CODE_POINTS: Final = (*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x200B, 0x2010),
                             *range(0x2028, 0x202F), *range(0x2060, 0x2070), 0xFEFF,
                             *range(0xD800, 0xE000))
_ESCAPES: Final = {cp: (f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}")
                   for cp in UNSAFE_CODE_POINTS}


def printable(text: object) -> str:
    """`text` (or its `str()`) as one line a terminal shows as is, escapes visible."""
    return str(text).translate(_ESCAPES)
