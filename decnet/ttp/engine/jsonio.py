"""JSON in and out of the engine: exact event parsing, bounded tag serialization.

Both sides face attacker-written data. `parse_json` keeps integers exact (orjson
reads one beyond 64 bits as a float) and turns every malformed input into an
`EventError`. `bounded` copies a value for a tag: strings cut at
`EVIDENCE_MAX_VALUE_BYTES`, containers nested deeper than `EVIDENCE_MAX_DEPTH`
replaced, and the whole tag held near `EVIDENCE_MAX_TAG_BYTES` of JSON; each cut
leaves a visible marker and sets the tag's `evidence_truncated`. `dump_tag` and
`dump_tags` never raise: whatever an event held, a tag is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from decnet.ttp.constants import (
    EVIDENCE_MAX_DEPTH,
    EVIDENCE_MAX_TAG_BYTES,
    EVIDENCE_MAX_VALUE_BYTES,
)
from decnet.ttp.errors import EventError

if TYPE_CHECKING:
    from decnet.ttp.engine.events import Tag

#: A serialized tag never exceeds this many bytes (the tag budget, plus the one value
#: that may cross it, JSON-escaped, plus one marker per open container).
TAG_MAX_BYTES: Final = EVIDENCE_MAX_TAG_BYTES + 6 * EVIDENCE_MAX_VALUE_BYTES + 8 * 1024

#: A digit run this long may be an integer orjson cannot hold exactly; runs are found by
#: mapping every digit to "0" and everything else to " " (5x faster than a regex).
_LONG_DIGITS: Final = b"0" * 19
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_INT64_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1


class JSONInputError(EventError):
    """Input that is not JSON this project reads; the message says why."""


def parse_json(raw: bytes | str) -> Any:
    """Decode one JSON document; integers keep their exact value.

    Raises `JSONInputError` (an `EventError`) for malformed JSON, lone surrogates, NaN/Infinity,
    nesting beyond 1,024 levels or integers longer than Python reads (4,300 digits).
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JSONInputError(f"malformed JSON: {exc}") from None
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if _LONG_DIGITS not in data.translate(_DIGITS_ONLY):
        return value
    # orjson accepted it; only a long integer may have lost precision
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise JSONInputError(f"malformed JSON: {exc}") from None


@dataclass(slots=True)
class Budget:
    """What is left of one tag's bytes, and whether anything was cut."""

    left: int = EVIDENCE_MAX_TAG_BYTES
    truncated: bool = False
    #: integers beyond 64 bits as `orjson.Fragment` (for orjson) instead of `int`
    fragments: bool = False


def bounded(value: Any, budget: Budget, depth: int = 0) -> Any:
    """A copy of `value` that orjson serializes, within `budget` (see the module doc)."""
    if value is None or value is True or value is False:
        budget.left -= 5
        return value
    if isinstance(value, str):
        return bounded_text(value, budget)
    if isinstance(value, int):
        return _integer(value, budget)
    if isinstance(value, float):
        budget.left -= 24
        return value
    if isinstance(value, Mapping | list | tuple):
        if depth >= EVIDENCE_MAX_DEPTH:
            return _marker(budget, f"[nested deeper than {EVIDENCE_MAX_DEPTH} levels]")
        if isinstance(value, Mapping):
            return _mapping(value, budget, depth + 1)
        return _sequence(value, budget, depth + 1)
    return _marker(budget, f"[{type(value).__name__} is no JSON value]")


def bounded_text(text: str, budget: Budget) -> str:
    """`text` cut to `EVIDENCE_MAX_VALUE_BYTES` (and the budget), lone surrogates as U+FFFD."""
    limit = max(0, min(EVIDENCE_MAX_VALUE_BYTES, budget.left))
    head = text[:limit]
    if not head.isascii():
        head = _LONE_SURROGATE.sub("\ufffd", head)
        data = head.encode("utf-8")
        if len(data) > limit:
            head = data[:limit].decode("utf-8", "ignore")
    if len(head) < len(text):
        cut = len(text) - len(head)
        head = f"{head}…[truncated: {cut} more characters]"
        budget.truncated = True
    budget.left -= _json_size(head) + 1
    return head


def _integer(value: int, budget: Budget) -> Any:
    if _INT64_MIN <= value <= _UINT64_MAX:
        budget.left -= 21
        return value
    try:
        digits = str(value)
    except ValueError:  # more digits than Python writes
        return _marker(budget, f"[integer of {value.bit_length()} bits]")
    if len(digits) > EVIDENCE_MAX_VALUE_BYTES:
        return _marker(budget, f"[integer of {len(digits)} digits]")
    budget.left -= len(digits) + 1
    return orjson.Fragment(digits.encode("ascii")) if budget.fragments else value


def _mapping(value: Mapping[Any, Any], budget: Budget, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for done, (key, item) in enumerate(value.items()):
        if budget.left <= 0:
            out["…"] = _marker(budget, f"[{len(value) - done} more keys]")
            break
        name = bounded_text(key if isinstance(key, str) else _key(key), budget)
        out[name] = bounded(item, budget, depth)
    return out


def _sequence(value: list[Any] | tuple[Any, ...], budget: Budget, depth: int) -> list[Any]:
    out: list[Any] = []
    for done, item in enumerate(value):
        if budget.left <= 0:
            out.append(_marker(budget, f"[{len(value) - done} more items]"))
            break
        out.append(bounded(item, budget, depth))
    return out


def _key(key: Any) -> str:
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key) if not isinstance(key, int) or abs(key) < 1 << 64 else "<int>"
    return f"<{type(key).__name__}>"


def _marker(budget: Budget, text: str) -> str:
    budget.truncated = True
    budget.left -= len(text) + 3
    return "…" + text


def _json_size(text: str) -> int:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2
    return len(orjson.dumps(text))


def tag_dict(tag: Tag) -> dict[str, Any]:
    """`tag` as a JSON-ready object, bounded (see the module doc); integers stay `int`,
    so one beyond 64 bits needs `dump_tag` (or Python's `json`) to be written."""
    plain = _plain(tag)
    if _fits(plain) is None:
        return _bounded_tag(tag, Budget())
    plain["evidence"] = dict(tag.evidence)
    return plain


def dump_tag(tag: Tag) -> bytes:
    """One tag as JSON bytes, at most `TAG_MAX_BYTES`; never raises."""
    data = _fits(_plain(tag))
    return data if data is not None else orjson.dumps(_bounded_tag(tag, Budget(fragments=True)))


def dump_tag_within(tag: Tag, max_bytes: int) -> bytes:
    """One tag as JSON bytes within `max_bytes` (2 KiB or more), for samples kept beside
    counters: its identifying texts cut short, its evidence given the rest, each cut
    with a visible marker (and `evidence_truncated`); never raises."""
    plain = _fits(_plain(tag))
    if plain is not None and len(plain) <= max_bytes:
        return plain
    data = b""
    for field_bytes, evidence_bytes in ((128, max_bytes - 1536), (32, max_bytes // 4), (8, 0)):
        data = orjson.dumps(_sample_tag(tag, field_bytes, max(0, evidence_bytes)))
        if len(data) <= max_bytes:
            break
    return data


def _sample_tag(tag: Tag, field_bytes: int, evidence_bytes: int) -> dict[str, Any]:
    cut = False

    def short(value: str | None) -> str | None:
        nonlocal cut
        if value is None:
            return None
        budget = Budget(left=field_bytes)
        text = bounded_text(value, budget)
        cut = cut or budget.truncated
        return text

    budget = Budget(left=evidence_bytes, fragments=True)
    out: dict[str, Any] = {
        "uuid": tag.uuid, "source_kind": short(tag.source_kind),
        "source_id": short(tag.source_id), "rule_id": tag.rule_id,
        "rule_version": tag.rule_version, "tactic": tag.tactic,
        "technique_id": tag.technique_id, "sub_technique_id": tag.sub_technique_id,
        "confidence": tag.confidence, "evidence": _mapping(tag.evidence, budget, 0),
        "attack_release": tag.attack_release,
    }
    for name in ("attacker_uuid", "session_id", "decky_id", "src_ip", "sensor"):
        out[name] = short(getattr(tag, name))
    if cut or budget.truncated:
        out["evidence_truncated"] = True
    return out


def dump_tags(tags: Iterable[Tag]) -> bytes:
    """A JSON array of tags (each bounded as by `dump_tag`); never raises."""
    return b"[" + b",".join(dump_tag(tag) for tag in tags) + b"]"


def _plain(tag: Tag) -> dict[str, Any]:
    return {
        "uuid": tag.uuid,
        "source_kind": tag.source_kind,
        "source_id": tag.source_id,
        "rule_id": tag.rule_id,
        "rule_version": tag.rule_version,
        "tactic": tag.tactic,
        "technique_id": tag.technique_id,
        "sub_technique_id": tag.sub_technique_id,
        "confidence": tag.confidence,
        "evidence": tag.evidence,
        "attack_release": tag.attack_release,
        "attacker_uuid": tag.attacker_uuid,
        "session_id": tag.session_id,
        "decky_id": tag.decky_id,
        "src_ip": tag.src_ip,
        "sensor": tag.sensor,
    }


def _fits(plain: dict[str, Any]) -> bytes | None:
    """`plain` as JSON when nothing in it needs bounding (the common case), else None.

    orjson refuses whatever `bounded` would change (deep nesting, integers beyond
    64 bits, lone surrogates, non-JSON types or keys); a document of at most
    `EVIDENCE_MAX_VALUE_BYTES` holds no longer value; fewer brackets than
    `EVIDENCE_MAX_DEPTH` allow no deeper nesting.
    """
    try:
        data = orjson.dumps(plain)
    except TypeError:
        return None
    if (len(data) > EVIDENCE_MAX_VALUE_BYTES
            or data.count(b"[") + data.count(b"{") > EVIDENCE_MAX_DEPTH):
        return None
    return data


def _bounded_tag(tag: Tag, budget: Budget) -> dict[str, Any]:
    text = bounded_text
    out: dict[str, Any] = {
        "uuid": tag.uuid,
        "source_kind": text(tag.source_kind, budget),
        "source_id": text(tag.source_id, budget),
        "rule_id": tag.rule_id,
        "rule_version": tag.rule_version,
        "tactic": tag.tactic,
        "technique_id": tag.technique_id,
        "sub_technique_id": tag.sub_technique_id,
        "confidence": tag.confidence,
        "evidence": {},
        "attack_release": tag.attack_release,
    }
    for name in ("attacker_uuid", "session_id", "decky_id", "src_ip", "sensor"):
        value = getattr(tag, name)
        out[name] = None if value is None else text(value, budget)
    out["evidence"] = _mapping(tag.evidence, budget, 0)
    if budget.truncated:
        out["evidence_truncated"] = True
    return out
