"""Reading event files: plain or gzip (by content, not name), stdin, in blocks of lines.

A block holds whole lines only and is about `TAG_BLOCK_BYTES` long, so memory stays
constant whatever the file size. No line is held past `max_line` bytes: the rest of an
over-long line is skipped as it is read and the line is replaced by `TOO_LONG`.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from decnet.ttp.constants import TAG_BLOCK_BYTES

BLOCK_BYTES: Final = TAG_BLOCK_BYTES
#: Stands in for a line longer than the limit (a NUL-led line is never valid JSON).
TOO_LONG: Final = b"\x00\x00decnet-ttp: line too long\x00\x00"
GZIP_MAGIC: Final = b"\x1f\x8b"
STDIN: Final = "-"


@dataclass(frozen=True, slots=True)
class Block:
    """Whole lines of input `label`, the first of them line number `first_line`."""

    label: str
    first_line: int
    data: bytes


class InputError(OSError):
    """An input that cannot be read (a corrupt gzip stream, a truncated one)."""


@contextmanager
def open_input(name: str) -> Iterator[IO[bytes]]:
    """`name` ('-' for stdin) as a binary stream, gunzipped when it starts like gzip."""
    raw: IO[bytes]
    if name == STDIN:
        raw = sys.stdin.buffer
        close = False
    else:
        raw = Path(name).open("rb")  # noqa: SIM115 - closed below
        close = True
    try:
        peek = getattr(raw, "peek", None)
        head = peek(2)[:2] if peek is not None else b""
        if head == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield raw
    finally:
        if close:
            raw.close()


def blocks(label: str, source: IO[bytes], max_line: int,
           block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[Block, int]]:
    """Blocks of whole lines and the bytes read for each."""
    read = getattr(source, "read1", source.read)
    carry = b""
    skipping = False  # inside an over-long line, discarding until its newline
    line = 1
    while True:
        try:
            chunk = read(block_bytes)
        except (EOFError, zlib.error) as exc:
            raise InputError(f"{label}: {exc}") from exc
        if not chunk:
            break
        size = len(chunk)
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                yield Block(label, line, b""), size
                continue
            chunk = chunk[cut + 1:]
            skipping = False
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
        else:
            carry = data[cut + 1:]
            whole = data[:cut + 1]
            yield Block(label, line, whole), size
            line += whole.count(b"\n")
            size = 0
        if len(carry) > max_line:
            carry = b""
            skipping = True
            yield Block(label, line, TOO_LONG + b"\n"), size
            line += 1
        elif size:
            yield Block(label, line, b""), size
    if carry and not skipping:
        yield Block(label, line, carry + b"\n"), 0
