"""The plain reference evaluation: every rule, one precompiled `re.search` at a time.

It reads each rule's `match_spec` itself (not the compiled matchers) and knows
nothing of RE2, PCRE2 or sets. The property tests hold the engine to it and
the benchmarks measure the engine beside it. It is not safe against hostile
patterns: never use it on live traffic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from decnet.ttp.constants import COMMAND_CONTEXT_FIELDS, DEFAULT_MATCH_FIELDS
from decnet.ttp.engine.events import Event, Tag, tag_uuid
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.matchers import as_text
from decnet.vocabulary import StateName

Predicate = Callable[[Mapping[str, Any]], bool]

#: Python flags of every rule pattern (the documented semantics).
PATTERN_FLAGS = re.ASCII


class ReferenceEngine:
    """`evaluate(event) -> list[Tag]` by looping over every rule of the event's kind."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules = sorted(rules, key=lambda r: r.rule_id)
        self._predicates: dict[tuple[str, str], Predicate] = {}
        for rule in self.rules:
            if rule.is_lifter or not rule.matchers:
                continue
            for kind in rule.applies_to:
                self._predicates[(rule.rule_id, kind)] = _node(
                    rule.match_spec, DEFAULT_MATCH_FIELDS.get(kind, ""), False)

    def evaluate(self, event: Event | Mapping[str, Any],
                 now: datetime | None = None) -> list[Tag]:
        if not isinstance(event, Event):
            event = Event.from_mapping(event)
        now = now or datetime.now(UTC)
        tags: list[Tag] = []
        for rule in self.rules:
            predicate = self._predicates.get((rule.rule_id, event.source_kind))
            if predicate is None:
                continue
            state = rule.state
            if state.expires_at is not None and state.expires_at <= now:
                state = type(state)()
            if state.state is StateName.DISABLED:
                continue
            if not predicate(event.payload):
                continue
            evidence = {f: event.payload[f] for f in rule.evidence_fields
                        if f in event.payload}
            if event.source_kind == "command":
                for key in COMMAND_CONTEXT_FIELDS:
                    if key in event.payload and key not in evidence:
                        evidence[key] = event.payload[key]
            for emit in rule.emits:
                confidence = emit.confidence
                if state.state is StateName.CLIPPED and state.confidence_max is not None:
                    confidence = min(confidence, state.confidence_max)
                tags.append(Tag(
                    uuid=tag_uuid(event.source_kind, event.source_id, rule.rule_id,
                                  rule.rule_version, emit.technique_id,
                                  emit.sub_technique_id),
                    source_kind=event.source_kind, source_id=event.source_id,
                    rule_id=rule.rule_id, rule_version=rule.rule_version,
                    tactic=emit.tactic, technique_id=emit.technique_id,
                    sub_technique_id=emit.sub_technique_id, confidence=confidence,
                    evidence=evidence, attacker_uuid=event.attacker_uuid,
                    session_id=event.session_id, decky_id=event.decky_id,
                    src_ip=event.src_ip, sensor=event.sensor,
                ))
        return tags


def _text(payload: Mapping[str, Any], field: str) -> str | None:
    value: Any = payload.get(field)
    if value is None and "." in field:
        value = payload
        for part in field.split("."):
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
    return as_text(value)


def _node(spec: Mapping[str, Any], field: str, folded: bool) -> Predicate:
    field = spec.get("field", field)
    folded = spec.get("case_insensitive", folded)
    parts: list[Predicate] = []
    if "pattern" in spec:
        parts.append(_pattern(spec["pattern"], field, folded))
    for op in ("contains", "startswith", "endswith", "equals", "in"):
        if op in spec:
            parts.append(_string_op(op, spec[op], field, folded))
    for op in ("all", "any"):
        if op in spec:
            parts.append(_combine(op, [_node(c, field, folded) for c in spec[op]]))
    if "not" in spec:
        inner = _node(spec["not"], field, folded)
        parts.append(lambda p: not inner(p))
    return lambda p: all(part(p) for part in parts)


def _pattern(pattern: str, field: str, folded: bool) -> Predicate:
    search = re.compile(pattern, PATTERN_FLAGS | (re.IGNORECASE if folded else 0)).search

    def test(payload: Mapping[str, Any]) -> bool:
        text = _text(payload, field)
        return text is not None and search(text) is not None

    return test


def _combine(op: str, children: list[Predicate]) -> Predicate:
    if op == "all":
        return lambda p: all(c(p) for c in children)
    return lambda p: any(c(p) for c in children)


def _string_op(op: str, arg: Any, field: str, folded: bool) -> Predicate:
    values = list(arg) if op == "in" else [arg]
    needles = [_as_text(v) for v in values]
    if folded:
        needles = [n.casefold() for n in needles]

    def test(payload: Mapping[str, Any]) -> bool:
        text = _text(payload, field)
        if text is None:
            return False
        if folded:
            text = text.casefold()
        if op == "contains":
            return needles[0] in text
        if op == "startswith":
            return text.startswith(needles[0])
        if op == "endswith":
            return text.endswith(needles[0])
        return text in needles

    return test


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
