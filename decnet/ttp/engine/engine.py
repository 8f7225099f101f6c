"""`RuleEngine`: evaluates events against the live rules of a store."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from decnet.ttp.constants import (
    COMMAND_CONTEXT_FIELDS,
    CORRELATION_MAX_GROUPS,
    CORRELATION_MAX_LATENESS,
)
from decnet.ttp.engine.correlation import CorrelationStats, Correlator
from decnet.ttp.engine.events import Event, Tag, rule_tags
from decnet.ttp.engine.index import Compaction, RuleIndex
from decnet.ttp.engine.prefilter import Bucket, BucketKey, EvalContext
from decnet.ttp.rules.bounded import STATS, FallbackStats
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.telemetry import get_tracer, tracing_enabled
from decnet.vocabulary import (
    DEFINITION,
    DELETED,
    RESYNC,
    SCOPED,
    STATE,
    RuleChange,
    RuleState,
    StateName,
)

log = logging.getLogger(__name__)

_NO_UNSAFE: frozenset[str] = frozenset()

#: The background compactor waits this long after a change before rebuilding.
COMPACTION_DEBOUNCE_SECONDS = 0.02


@dataclass(slots=True)
class _Compaction:
    """One compaction round: buckets to build from `base`, built so far."""

    base: RuleIndex
    plan: Compaction
    built: dict[BucketKey, Bucket] = field(default_factory=dict)
    position: int = 0


class RuleEngine:
    """Tags events with ATT&CK techniques using an index that is swapped, never mutated.

    An evaluation reads the index once, so one running while a change lands sees
    either the old rule or the new one, never a mix. Changed rules are evaluated on
    their own until a compaction has rebuilt the prefilter buckets they touch: on
    the event loop `apply` runs on, one bucket per callback; without a running loop
    in a background thread (or, with `background=False`, inside `apply`).
    """

    def __init__(self, rules: Iterable[CompiledRule] = (), *, background: bool = True,
                 max_groups: int = CORRELATION_MAX_GROUPS,
                 max_lateness: float = CORRELATION_MAX_LATENESS) -> None:
        self._index = RuleIndex.build(rules)
        self._correlator = Correlator(self._index.rules.values(), max_groups=max_groups,
                                      max_lateness=max_lateness)
        self._lock = threading.Lock()
        self._compacting = False
        self._compaction_loop: asyncio.AbstractEventLoop | None = None
        self._background = background
        self.changes_applied = 0
        self.events_evaluated = 0
        self.tags_emitted = 0
        self.compactions = 0

    @property
    def rules(self) -> Mapping[str, CompiledRule]:
        return MappingProxyType(self._index.rules)

    @property
    def pending(self) -> int:
        """Changed rules not yet folded into the prefilter (evaluated one by one)."""
        return len(self._index.pending)

    @property
    def correlation_stats(self) -> CorrelationStats:
        """Live groups, evictions, expiries, late events and windows fired of cross-event rules."""
        return self._correlator.stats

    @property
    def fallback_stats(self) -> FallbackStats:
        """Searches, limit hits and oversized texts of the bounded regex fallback
        (process-wide)."""
        return STATS

    def replace_all(self, rules: Iterable[CompiledRule]) -> None:
        index = RuleIndex.build(rules, self._index.generation + 1)
        with self._lock:
            self._index = index
            self._correlator.replace_all(index.rules.values())

    def apply(self, change: RuleChange) -> bool:
        """Apply one change; returns False when the caller must reload (a resync)."""
        kind = change.change_kind
        with self._lock:
            index = self._index
            if kind == DEFINITION and isinstance(change.new_value, CompiledRule):
                index = index.with_rule(change.new_value)
            elif kind == STATE and isinstance(change.new_value, RuleState):
                index = index.with_state(change.rule_id, change.new_value)
            elif kind == SCOPED and isinstance(change.new_value, tuple):
                index = index.with_scoped(change.rule_id, change.new_value)
            elif kind == DELETED:
                index = index.without(change.rule_id)
            elif kind == RESYNC:
                return False
            else:
                log.warning("ignoring malformed change %r for %s", kind, change.rule_id)
                return True
            self._index = index
            self._correlator.sync(change.rule_id, index.rules.get(change.rule_id))
            self.changes_applied += 1
            stranded = (self._compaction_loop is not None
                        and self._compaction_loop.is_closed())
            start = bool(index.pending) and (not self._compacting or stranded)
            if start:
                self._compacting = True
                self._compaction_loop = None
        if start:
            self._start_compaction()
        return True

    def compact(self) -> None:
        """Fold every pending rule into the prefilter now, in this thread."""
        while True:
            base = self._index
            if not base.pending:
                return
            work, built = base.rebuild()
            self._install(base, work, built)

    def _install(self, base: RuleIndex, work: Compaction,
                 built: Mapping[BucketKey, Bucket]) -> bool:
        """Swap in rebuilt buckets; True when nothing is pending any more."""
        with self._lock:
            self._index = self._index.with_rebuilt(base, work, built)
            self.compactions += 1
            if self._index.pending:
                return False
            self._compacting = False
            return True

    def _start_compaction(self) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._compaction_loop = loop
            # On the event loop: one bucket compile per callback, so an evaluation
            # queued on the loop waits for one bucket compile at most.
            loop.call_later(COMPACTION_DEBOUNCE_SECONDS, self._step, loop, None)
        elif self._background:
            threading.Thread(target=self._compact_thread, name="ttp-engine-compact",
                             daemon=True).start()
        else:
            self.compact()
            with self._lock:
                self._compacting = False

    def _step(self, loop: asyncio.AbstractEventLoop, work: _Compaction | None) -> None:
        try:
            if work is None:
                base = self._index
                work = _Compaction(base, base.compaction())
            elif work.position < len(work.plan.items):
                key, build = work.plan.items[work.position]
                work.built[key] = build()
                work.position += 1
            else:
                if self._install(work.base, work.plan, work.built):
                    return
                work = None
        except Exception:
            with self._lock:
                self._compacting = False
            log.exception("prefilter compaction failed; changed rules stay individually "
                          "evaluated")
            return
        loop.call_soon(self._step, loop, work)

    def _compact_thread(self) -> None:
        try:
            while True:
                time.sleep(COMPACTION_DEBOUNCE_SECONDS)
                base = self._index
                work = base.compaction()
                built: dict[BucketKey, Bucket] = {}
                for key, build in work.items:
                    built[key] = build()
                    time.sleep(0.001)  # let evaluating threads have the GIL
                if self._install(base, work, built):
                    return
        except Exception:
            with self._lock:
                self._compacting = False
            log.exception("prefilter compaction failed; changed rules stay individually "
                          "evaluated")

    def evaluate(self, event: Event | Mapping[str, Any]) -> list[Tag]:
        """Every tag the live rules emit for `event`: `match`, then `correlate`.

        Stateful when cross-event rules are loaded: feed events in event order.
        """
        if not isinstance(event, Event):
            event = Event.from_mapping(event)
        tags = self.match(event)
        tags.extend(self.correlate(event, tags))
        return tags

    @property
    def correlated_kinds(self) -> frozenset[str]:
        """The source kinds of the events `correlate` reads: those cross-event rules count,
        and those of the rules whose tags an `after:` waits for. The tag job hands
        `correlate` the events of these kinds only."""
        correlator = self._correlator
        kinds = set(correlator.kinds)
        rule_ids, techniques = correlator.prerequisites
        if rule_ids or techniques:
            for rule in self._index.rules.values():
                if rule.rule_id in rule_ids or any(
                        emit.technique_id in techniques or emit.sub_technique_id in techniques
                        for emit in rule.emits):
                    kinds.update(rule.applies_to)
        return frozenset(kinds)

    def correlate(self, event: Event, fired: list[Tag]) -> list[Tag]:
        """Tags of cross-event rules that `event` (with the tags it `fired`) completes.

        Stateful: call it once per event, in event order, after `match`.
        """
        tags = self._correlator.correlate(event, fired)
        self.tags_emitted += len(tags)
        return tags

    def match(self, event: Event | Mapping[str, Any]) -> list[Tag]:
        """Tags of the single-event rules for `event`, in rule id order; no state kept."""
        if not isinstance(event, Event):
            event = Event.from_mapping(event)
        self.events_evaluated += 1
        index = self._index
        kind = event.source_kind
        if tracing_enabled():
            with get_tracer().start_as_current_span(
                "ttp.eval",
                attributes={"ttp.source_kind": kind, "ttp.source_id": event.source_id},
            ):
                return self._evaluate(index, event, traced=True)
        return self._evaluate(index, event, traced=False)

    def _evaluate(self, index: RuleIndex, event: Event, traced: bool) -> list[Tag]:
        kind = event.source_kind
        payload = event.payload
        hits: dict[str, int] = {}
        unsafe: set[str] | None = None
        for field_index in index.fields.get(kind, ()):
            text = field_index.get(payload)
            if text is None:
                continue
            if not text:
                for bucket in field_index.scan:
                    for i in bucket.empty_hits:
                        for rule_id, bits in bucket.triggers[i]:
                            hits[rule_id] = hits.get(rule_id, 0) | bits
                    for rule_id, bits, pattern in bucket.extra:
                        if pattern.matches_empty:
                            hits[rule_id] = hits.get(rule_id, 0) | bits
                continue
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                # RE2 cannot read lone surrogates: the plans search these leaves one
                # by one (`CompiledPattern.search` reads them as U+FFFD).
                unsafe = unsafe or set()
                unsafe.add(field_index.field)
                for bucket in field_index.scan:
                    for rule_id in bucket.rule_ids:
                        hits.setdefault(rule_id, 0)
                continue
            for bucket in field_index.scan:
                triggers = bucket.triggers
                for i in bucket.match(data):
                    for rule_id, bits in triggers[i]:
                        hits[rule_id] = hits.get(rule_id, 0) | bits
                for rule_id, bits, pattern in bucket.extra:
                    if pattern.search_bytes(data):
                        hits[rule_id] = hits.get(rule_id, 0) | bits
        always = index.always.get(kind)
        if always:
            for rule_id in always:
                hits.setdefault(rule_id, 0)
        pending = index.pending
        if pending:
            for rule_id in pending:
                hits.setdefault(rule_id, 0)
        if not hits:
            return []
        rules = index.rules
        plans = index.plans
        ctx: EvalContext | None = None
        now: datetime | None = None
        tags: list[Tag] = []
        for rule_id in sorted(hits):
            rule = rules.get(rule_id)
            if rule is None:
                continue
            state = rule.state
            if rule.scoped:
                now = now or datetime.now(UTC)
                state = rule.state_for(event.decky_id, event.sensor, now)
            if state.state is not StateName.ENABLED or state.expires_at is not None:
                if state.expires_at is not None:
                    now = now or datetime.now(UTC)
                    state = state.effective(now)
                if state.state is StateName.DISABLED:
                    continue
            if rule_id in pending:
                tree = rule.matchers.get(kind)
                if tree is None:
                    continue
                if not tree.evaluate(payload):
                    continue
            else:
                plan = plans[rule_id].get(kind)
                if plan is None:
                    continue
                mask = hits[rule_id]
                if not (plan.single and mask and not unsafe):
                    ctx = ctx or EvalContext(unsafe or _NO_UNSAFE)
                    if not plan.check(payload, mask, ctx):
                        continue
            fired = _tags_for(rule, state, event)
            if traced:
                _trace_fire(rule, fired)
            tags.extend(fired)
        self.tags_emitted += len(tags)
        return tags


def _tags_for(rule: CompiledRule, state: RuleState, event: Event) -> list[Tag]:
    return rule_tags(rule, state, event, _evidence(rule, event))


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
