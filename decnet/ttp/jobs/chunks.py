"""One block of lines through the input adapter and the single-event rules.

This is the part of the tag job that runs in parallel: it keeps no state between
blocks, so any process may take any block. What needs the whole log in order stays
with the parent (`tagging`): the events cross-event rules read, Cowrie logins whose
session started in an earlier block, and the session table. Everything else leaves a
block as ready tag lines and summary counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError, Tag
from decnet.ttp.engine.jsonio import dump_tag, parse_json
from decnet.ttp.inputs import Mapper, Skipped
from decnet.ttp.inputs.sessions import needs_service, session_update, with_service
from decnet.ttp.jobs.reading import TOO_LONG, Block
from decnet.ttp.jobs.summary import Counts

#: An event the parent handles: its line number, the event's fields (`event_fields`),
#: its single-event tags and their JSON lines; `None` lines: a Cowrie login the parent
#: completes (its service from the session table) and matches itself.
Evaluated = tuple[int, tuple[Any, ...], list[Tag], bytes | None]


def event_fields(event: Event) -> tuple[Any, ...]:
    """`Event(*event_fields(event)) == event`; a tuple crosses processes cheaply."""
    return (event.source_kind, event.source_id, event.payload, event.attacker_uuid,
            event.session_id, event.decky_id, event.src_ip, event.sensor, event.timestamp)

_NO_TAGS: Final[list[Tag]] = []


@dataclass(slots=True)
class BlockResult:
    """A block's output in input order: runs of ready tag lines (bytes) and the events
    the parent handles; with the block's bad lines, unknown kinds, the state each session
    it touched is left in (in the order of their last updates), and the counts of its
    events and their single-event tags (the parent adds the logins it matches itself
    and the tags of cross-event rules)."""

    label: str
    items: list[bytes | Evaluated] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)
    sessions: list[tuple[str, str | None]] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


def tag_fields(tag: Tag) -> tuple[Any, ...]:
    """`Tag(*tag_fields(tag)) == tag`."""
    return (tag.uuid, tag.source_kind, tag.source_id, tag.rule_id, tag.rule_version,
            tag.tactic, tag.technique_id, tag.sub_technique_id, tag.confidence, tag.evidence,
            tag.attack_release, tag.attacker_uuid, tag.session_id, tag.decky_id, tag.src_ip,
            tag.sensor)


#: A `BlockResult` as plain tuples, lists and dicts: what crosses from a worker process
#: to the parent (pickling dataclasses and Counters costs several times more).
Packed = tuple[Any, ...]


def pack(result: BlockResult) -> Packed:
    items = [item if isinstance(item, bytes)
             else (item[0], item[1], [tag_fields(tag) for tag in item[2]], item[3])
             for item in result.items]
    counts = result.counts
    return (result.label, items, result.bad, dict(result.unknown), result.sessions,
            (counts.events, counts.tags, dict(counts.techniques), dict(counts.rules),
             counts.addresses, counts.sessions))


def unpack(packed: Packed) -> BlockResult:
    label, items, bad, unknown, sessions, (events, tags, techniques, rules, addresses,
                                           per_session) = packed
    return BlockResult(
        label,
        [item if isinstance(item, bytes)
         else (item[0], item[1], [Tag(*fields) for fields in item[2]], item[3])
         for item in items],
        bad, Counter(unknown), sessions,
        Counts(events, tags, Counter(techniques), Counter(rules), addresses, per_session))


def serialize(tags: list[Tag]) -> bytes:
    """The tags as JSON lines, each bounded by `dump_tag`; never raises."""
    return b"".join([dump_tag(tag) + b"\n" for tag in tags])


def process_block(engine: RuleEngine, map_record: Mapper, block: Block, max_line: int,
                  too_long: str, correlated: frozenset[str] | None) -> BlockResult:
    """Decode, map and match every line of `block`; a bad line is reported, never raised.

    Events of a kind in `correlated` (every event when None) go to the parent whole.
    """
    result = BlockResult(block.label)
    items = result.items
    counts = result.counts
    ready: list[bytes] = []
    local: dict[str, str | None] = {}  # this block's session updates so far
    loads = parse_json
    match = engine.match
    number = block.first_line - 1
    lines = block.data.split(b"\n")
    lines.pop()  # a block ends with a newline
    for raw in lines:
        number += 1
        if len(raw) > max_line or raw == TOO_LONG:
            result.bad.append((number, too_long))
            continue
        if not raw or raw.isspace():
            continue
        raw = raw.rstrip()
        try:
            mapped = map_record(loads(raw), raw)
        except EventError as exc:  # JSONInputError included
            result.bad.append((number, str(exc)))
            continue
        except Exception as exc:  # hostile data must cost its own line, never the job
            result.bad.append((number, f"unreadable record ({type(exc).__name__})"))
            continue
        if isinstance(mapped, Skipped):
            result.unknown[mapped.kind] += 1
            continue
        for event in mapped:
            kind = event.source_kind
            if kind == "session":
                update = session_update(event)
                if update is not None:
                    local.pop(update[0], None)  # keep the order of the last updates
                    local[update[0]] = update[1]
            elif kind == "auth_attempt" and needs_service(event):
                session = event.session_id or ""
                if session not in local:  # started in an earlier block: the parent knows
                    if ready:
                        items.append(b"".join(ready))
                        ready = []
                    items.append((number, event_fields(event), _NO_TAGS, None))
                    continue
                protocol = local[session]
                if protocol is not None:
                    event = with_service(event, protocol)
            try:
                tags = match(event)
                out = serialize(tags) if tags else b""
            except Exception as exc:
                result.bad.append((number, f"event not evaluated ({type(exc).__name__}: "
                                           f"{str(exc)[:200]})"))
                tags, out = _NO_TAGS, b""
            if correlated is None or kind in correlated:
                if ready:
                    items.append(b"".join(ready))
                    ready = []
                items.append((number, event_fields(event), tags, out))
            elif out:
                ready.append(out)
            counts.add(event, tags)
    if ready:
        items.append(b"".join(ready))
    result.sessions = list(local.items())
    return result
