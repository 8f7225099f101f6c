"""The real-format fixtures of tests/fixtures/inputs, decoded."""

from __future__ import annotations

from pathlib import Path

import orjson

from decnet.ttp.engine.events import Event
from decnet.ttp.inputs import Skipped, mapper

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "inputs"


def lines(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


def events_of(name: str, fmt: str) -> list[Event]:
    """Every event of a fixture file, in order (skipped records left out)."""
    map_record = mapper(fmt)
    out: list[Event] = []
    for line in lines(name):
        mapped = map_record(orjson.loads(line), line)
        if not isinstance(mapped, Skipped):
            out.extend(mapped)
    return out
