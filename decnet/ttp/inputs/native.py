"""This project's own event JSON: one event per line, validated as is."""

from __future__ import annotations

from typing import Any

from decnet.ttp.engine.events import Event
from decnet.ttp.inputs.base import Mapped


def map_record(record: Any, raw: bytes) -> Mapped:
    """The event of one decoded native record; its `source_id` is its own."""
    return [Event.from_mapping(record)]
