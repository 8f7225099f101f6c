"""The input formats by name, and `auto`: each record recognised by its own keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from decnet.ttp.engine.events import EventError
from decnet.ttp.inputs import cowrie, native, opencanary
from decnet.ttp.inputs.base import Mapped

#: Maps one decoded record (and its raw line) onto events.
Mapper = Callable[[Any, bytes], Mapped]

AUTO: Final = "auto"
MAPPERS: Final[dict[str, Mapper]] = {
    "native": native.map_record,
    "cowrie": cowrie.map_record,
    "opencanary": opencanary.map_record,
}
FORMATS: Final = (AUTO, *MAPPERS)


def detect(record: Any) -> Mapper:
    """The format of one record: a native event has `source_kind`, Cowrie's an
    `eventid` starting `cowrie.`, OpenCanary's a `logtype`."""
    if isinstance(record, Mapping):
        if "source_kind" in record:
            return native.map_record
        eventid = record.get("eventid")
        if isinstance(eventid, str) and eventid.startswith("cowrie."):
            return cowrie.map_record
        if "logtype" in record:
            return opencanary.map_record
    raise EventError("not a native event, a Cowrie record or an OpenCanary record")


def map_auto(record: Any, raw: bytes) -> Mapped:
    return detect(record)(record, raw)


def mapper(fmt: str) -> Mapper:
    """The mapper of format `fmt` (one of `FORMATS`); `ValueError` for another name."""
    if fmt == AUTO:
        return map_auto
    try:
        return MAPPERS[fmt]
    except KeyError:
        raise ValueError(f"unknown input format {fmt!r} (one of {', '.join(FORMATS)})") \
            from None
