"""Input adapters: honeypot logs (Cowrie, OpenCanary) and native events onto `Event`s.

A format maps one decoded JSON record onto zero or more events, or skips it as an
unknown kind (`Skipped`, counted by the caller); a record it cannot read raises
`EventError`. Source ids are a hash of the log line, so a re-run tags alike.
"""

from __future__ import annotations

from decnet.ttp.inputs.base import Mapped, Skipped, source_id
from decnet.ttp.inputs.body import BodyError, ParsedBody, parse_body
from decnet.ttp.inputs.formats import AUTO, FORMATS, Mapper, detect, mapper
from decnet.ttp.inputs.sessions import SessionProtocols

__all__ = [
    "AUTO",
    "FORMATS",
    "BodyError",
    "Mapped",
    "Mapper",
    "ParsedBody",
    "SessionProtocols",
    "Skipped",
    "detect",
    "mapper",
    "parse_body",
    "source_id",
]
