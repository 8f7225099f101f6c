"""This project's own event JSON: one event per line, validated as is."""

from __future__ import annotations

from typing import Any

from decnet.ttp.constants import EVENT_MAX_ID_CHARS
from decnet.ttp.engine.events import Event
from decnet.ttp.inputs.base import Mapped

_LIMIT = EVENT_MAX_ID_CHARS


def map_record(record: Any, raw: bytes) -> Mapped:
    """The event of one decoded native record; its `source_id` is its own.

    The common shape (an object of strings, a payload object, no timestamp) is built
    directly (lone surrogates never get here: the JSON reader refuses them); anything
    else goes through `Event.from_mapping`, which checks and
    converts every field (so both paths give the same event).
    """
    if type(record) is dict:
        get = record.get
        kind = get("source_kind")
        source_id = get("source_id")
        payload = get("payload")
        if (type(kind) is str and 0 < len(kind) <= _LIMIT and type(source_id) is str
                and 0 < len(source_id) <= _LIMIT and type(payload) is dict
                and get("timestamp") is None):
            attacker = get("attacker_uuid")
            session = get("session_id")
            decky = get("decky_id")
            src_ip = get("src_ip")
            sensor = get("sensor")
            if ((attacker is None or (type(attacker) is str and len(attacker) <= _LIMIT))
                    and (session is None or (type(session) is str and len(session) <= _LIMIT))
                    and (decky is None or (type(decky) is str and len(decky) <= _LIMIT))
                    and (src_ip is None or (type(src_ip) is str and len(src_ip) <= _LIMIT))
                    and (sensor is None or (type(sensor) is str and len(sensor) <= _LIMIT))):
                return [Event(kind, source_id, payload, attacker, session, decky, src_ip,
                              sensor, None)]
    return [Event.from_mapping(record)]
