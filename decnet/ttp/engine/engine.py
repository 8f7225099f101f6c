"""`RuleEngine`: evaluates events against the live rules of a store."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from decnet.telemetry import get_tracer, tracing_enabled
from decnet.ttp.constants import COMMAND_CONTEXT_FIELDS
from decnet.ttp.engine.events import Event, Tag, tag_uuid
from decnet.ttp.engine.index import RuleIndex
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    STATE,
    RuleChange,
    RuleState,
    RuleStore,
    StateName,
)

log = logging.getLogger(__name__)


class RuleEngine:
    """Tags events with ATT&CK techniques using an index that is swapped, never mutated.

    An evaluation reads the index once, so one running while a change lands sees
    either the old rule or the new one, never a mix.
    """

    def __init__(self, rules: Iterable[CompiledRule] = ()) -> None:
        self._index = RuleIndex.build(rules)
        self.changes_applied = 0
        self.events_evaluated = 0
        self.tags_emitted = 0

    @classmethod
    async def from_store(cls, store: RuleStore) -> RuleEngine:
        return cls(await store.load_compiled())

    @property
    def rules(self) -> Mapping[str, CompiledRule]:
        return self._index.rules

    def replace_all(self, rules: Iterable[CompiledRule]) -> None:
        self._index = RuleIndex.build(rules)

    def apply(self, change: RuleChange) -> bool:
        """Apply one change; returns False when the caller must reload (a resync)."""
        kind = change.change_kind
        if kind == DEFINITION and isinstance(change.new_value, CompiledRule):
            self._index = self._index.with_rule(change.new_value)
        elif kind == STATE and isinstance(change.new_value, RuleState):
            current = self._index.rules.get(change.rule_id)
            if current is not None:
                self._index = self._index.with_rule(current.with_state(change.new_value))
        elif kind == DELETED:
            self._index = self._index.without(change.rule_id)
        elif kind == RESYNC:
            return False
        else:
            log.warning("ignoring malformed change %r for %s", kind, change.rule_id)
            return True
        self.changes_applied += 1
        return True

    async def follow(self, store: RuleStore) -> None:
        """Load the store's rules and apply its changes until cancelled."""
        changes = store.subscribe_changes()
        try:
            self.replace_all(await store.load_compiled())
            async for change in changes:
                if not self.apply(change):
                    self.replace_all(await store.load_compiled())
        finally:
            aclose = getattr(changes, "aclose", None)
            if aclose is not None:
                await aclose()

    def evaluate(self, event: Event | Mapping[str, Any]) -> list[Tag]:
        """Every tag the live rules emit for `event`."""
        if not isinstance(event, Event):
            event = Event.from_mapping(event)
        self.events_evaluated += 1
        index = self._index
        candidates = index.by_kind.get(event.source_kind, ())
        if not candidates:
            return []
        if tracing_enabled():
            with get_tracer().start_as_current_span(
                "ttp.eval",
                attributes={"ttp.source_kind": event.source_kind,
                            "ttp.source_id": event.source_id,
                            "ttp.candidates": len(candidates)},
            ):
                return self._evaluate(event, candidates, traced=True)
        return self._evaluate(event, candidates, traced=False)

    def _evaluate(self, event: Event, candidates: tuple[CompiledRule, ...],
                  traced: bool) -> list[Tag]:
        payload = event.payload
        kind = event.source_kind
        now: datetime | None = None
        tags: list[Tag] = []
        for rule in candidates:
            state = rule.state
            if state.expires_at is not None:
                now = now or datetime.now(UTC)
                if state.expires_at <= now:
                    state = DEFAULT_STATE
            if state.state is StateName.DISABLED:
                continue
            if not rule.matchers[kind](payload):
                continue
            fired = _tags_for(rule, state, event)
            if traced:
                _trace_fire(rule, fired)
            tags.extend(fired)
        self.tags_emitted += len(tags)
        return tags


def _tags_for(rule: CompiledRule, state: RuleState, event: Event) -> list[Tag]:
    evidence = _evidence(rule, event)
    return [
        Tag(
            uuid=tag_uuid(event.source_kind, event.source_id, rule.rule_id,
                          rule.rule_version, emit.technique_id, emit.sub_technique_id),
            source_kind=event.source_kind,
            source_id=event.source_id,
            rule_id=rule.rule_id,
            rule_version=rule.rule_version,
            tactic=emit.tactic,
            technique_id=emit.technique_id,
            sub_technique_id=emit.sub_technique_id,
            confidence=state.clamp(emit.confidence),
            evidence=evidence,
            attacker_uuid=event.attacker_uuid,
            session_id=event.session_id,
            decky_id=event.decky_id,
        )
        for emit in rule.emits
    ]


def _evidence(rule: CompiledRule, event: Event) -> dict[str, Any]:
    payload = event.payload
    evidence = {f: payload[f] for f in rule.evidence_fields if f in payload}
    if event.source_kind == "command":
        for key in COMMAND_CONTEXT_FIELDS:
            if key in payload and key not in evidence:
                evidence[key] = payload[key]
    return evidence


def _trace_fire(rule: CompiledRule, tags: list[Tag]) -> None:
    with get_tracer().start_as_current_span(
        "ttp.rule.fire",
        attributes={"ttp.rule_id": rule.rule_id, "ttp.rule_version": rule.rule_version,
                    "ttp.technique_ids": [t.technique_id for t in tags]},
    ):
        pass
