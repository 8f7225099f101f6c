"""Cross-event rules at run time: per-group windows over event time, bounded memory.

A group is one rule and one combination of its `group_by` values. Its window is
the last `timespan` seconds of the group's event time; an event that arrives out
of order counts if it falls inside that window, and an event older than the
newest event time seen minus the lateness bound is not counted at all (`late_events`),
nor is one dated more than a day ahead of the wall clock (`future_events`).
When the count reaches the threshold the rule fires once, and the group stays
quiet until its event time passes the end of the window that fired (one tag per
group and window). Live groups are capped: past the cap the least recently used
group is evicted (`groups_evicted`); groups whose window has long passed are
dropped first (`groups_expired`).
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from decnet.ttp.constants import (
    CORRELATION_EVIDENCE_VALUE_CHARS,
    CORRELATION_EVIDENCE_VALUES,
    CORRELATION_MAX_FUTURE,
    CORRELATION_MAX_GROUPS,
    CORRELATION_MAX_KEY_CHARS,
    CORRELATION_MAX_LATENESS,
)
from decnet.ttp.engine.events import Event, Tag, rule_tags
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.correlation import EVENT_FIELDS, CorrelationSpec
from decnet.ttp.rules.matchers import field_getter
from decnet.vocabulary import RuleState, StateName

#: One group-by value as itself, several as a tuple (a lone string saves a tuple per group).
GroupKey = str | tuple[str, ...]
ValueGetter = Callable[[Event], "str | None"]


@dataclass(slots=True)
class CorrelationStats:
    """Counters of the cross-event rules (read by the worker's metrics)."""

    live_groups: int = 0
    groups_evicted: int = 0
    groups_expired: int = 0
    late_events: int = 0
    future_events: int = 0
    windows_fired: int = 0


class _Group:
    """One rule's counting state for one group key; sized by the rule's threshold.

    `items` holds the counted event times (`event_count`) or value -> last time
    (`value_count`), created on first use; `prior` the prerequisite firings (`after`).
    """

    __slots__ = ("items", "last_time", "latch_until", "prior")

    def __init__(self) -> None:
        self.items: list[float] | dict[str, float] | None = None
        self.last_time = _NEVER
        self.latch_until = _NEVER
        self.prior: dict[str, float] | None = None


_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class _Plan:
    """A correlation rule ready to run: its getters and the prerequisite names it checks."""

    rule: CompiledRule
    spec: CorrelationSpec
    #: which filter this is among the installed rules (equal filters share one)
    filter_id: int
    group: tuple[ValueGetter, ...]
    value: Callable[[Mapping[str, Any]], str | None] | None
    after: tuple[str, ...]
    #: a group idle this long (window + lateness) behind the event being counted is dropped
    horizon: float


class Correlator:
    """Runs the cross-event rules; `correlate` is called once per event, in event order.

    Each rule keeps its own groups, at most `max_groups` of them, in least recently
    used order: a rule whose groups are many (spraying: one per source and password)
    cannot evict another rule's.
    """

    def __init__(self, rules: Iterable[CompiledRule] = (), *,
                 max_groups: int = CORRELATION_MAX_GROUPS,
                 max_lateness: float = CORRELATION_MAX_LATENESS,
                 clock: Callable[[], float] = time.time) -> None:
        if max_groups < 1 or max_lateness < 0:
            raise ValueError("max_groups must be positive and max_lateness not negative")
        self._max_groups = max_groups
        self._lateness = max_lateness
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, OrderedDict[GroupKey, _Group]] = {}
        self._plans: dict[str, _Plan] = {}
        self._by_kind: dict[str, tuple[_Plan, ...]] = {}
        #: prerequisite rule id / technique id -> (name, waiting plan) pairs
        self._after_rule: dict[str, tuple[tuple[str, _Plan], ...]] = {}
        self._after_technique: dict[str, tuple[tuple[str, _Plan], ...]] = {}
        self._watermark: float | None = None
        self._stats = CorrelationStats()
        self._filter_ids: dict[str, int] = {}
        self.replace_all(rules)

    @property
    def stats(self) -> CorrelationStats:
        """A snapshot of the counters."""
        with self._lock:
            self._stats.live_groups = sum(len(g) for g in self._groups.values())
            return CorrelationStats(**{f: getattr(self._stats, f)
                                       for f in CorrelationStats.__dataclass_fields__})

    @property
    def rule_ids(self) -> frozenset[str]:
        return frozenset(self._plans)

    @property
    def kinds(self) -> frozenset[str]:
        """The source kinds the cross-event rules count."""
        return frozenset(self._by_kind)

    @property
    def prerequisites(self) -> tuple[frozenset[str], frozenset[str]]:
        """Rule ids and technique ids whose tags an `after:` waits for."""
        return frozenset(self._after_rule), frozenset(self._after_technique)

    # -- rule changes ------------------------------------------------------------

    def replace_all(self, rules: Iterable[CompiledRule]) -> None:
        """Install a whole rule set; groups of rules whose definition changed are dropped."""
        plans = {r.rule_id: _plan(r, self._filter_ids, self._lateness) for r in rules
                 if r.correlation is not None}
        with self._lock:
            self._install(plans)

    def sync(self, rule_id: str, rule: CompiledRule | None) -> None:
        """Follow one rule change: `rule` is its new form, None when it was deleted."""
        with self._lock:
            current = self._plans.get(rule_id)
            if rule is None or rule.correlation is None:
                if current is None:
                    return
                plans = dict(self._plans)
                del plans[rule_id]
            else:
                plans = dict(self._plans)
                plans[rule_id] = _plan(rule, self._filter_ids, self._lateness)
            self._install(plans)

    def _install(self, plans: dict[str, _Plan]) -> None:
        old = self._plans
        dropped = {rid for rid, plan in old.items()
                   if rid not in plans or not _same_definition(plan.rule, plans[rid].rule)}
        for rule_id in dropped:
            self._groups.pop(rule_id, None)
        for rule_id in plans:
            self._groups.setdefault(rule_id, OrderedDict())
        self._plans = plans
        ordered = [plans[rid] for rid in _dependency_order(plans)]
        by_kind: dict[str, list[_Plan]] = {}
        after_rule: dict[str, list[tuple[str, _Plan]]] = {}
        after_technique: dict[str, list[tuple[str, _Plan]]] = {}
        for plan in ordered:
            for kind in plan.spec.kinds:
                by_kind.setdefault(kind, []).append(plan)
            for name in plan.after:
                what, _, ident = name.partition(":")
                table = after_rule if what == "rule" else after_technique
                table.setdefault(ident, []).append((name, plan))
        self._by_kind = {k: tuple(v) for k, v in by_kind.items()}
        self._after_rule = {k: tuple(v) for k, v in after_rule.items()}
        self._after_technique = {k: tuple(v) for k, v in after_technique.items()}

    # -- events --------------------------------------------------------------------

    def correlate(self, event: Event, fired: Iterable[Tag]) -> list[Tag]:
        """Tags of the cross-event rules `event` completes; `fired`: its other tags."""
        if not self._plans:
            return []
        with self._lock:
            moment = event.timestamp
            if moment is None:
                moment = self._watermark if self._watermark is not None else self._clock()
            elif self._watermark is None or moment > self._watermark:
                if moment > self._clock() + CORRELATION_MAX_FUTURE:
                    self._stats.future_events += 1
                    return []
                self._watermark = moment
            elif moment < self._watermark - self._lateness:
                self._stats.late_events += 1
                return []
            watched = bool(self._after_rule or self._after_technique)
            if watched:
                self._record(event, fired, moment)
            out: list[Tag] = []
            now: datetime | None = None
            passed: dict[int, bool] = {}
            for plan in self._by_kind.get(event.source_kind, ()):
                state = plan.rule.state
                if plan.rule.scoped:
                    now = now or datetime.now(UTC)
                    state = plan.rule.state_for(event.decky_id, event.sensor, now)
                if state.state is not StateName.ENABLED or state.expires_at is not None:
                    if state.expires_at is not None:
                        now = now or datetime.now(UTC)
                        state = state.effective(now)
                    if state.state is StateName.DISABLED:
                        continue
                check = plan.spec.filters.get(event.source_kind)
                if check is not None:
                    ok = passed.get(plan.filter_id)
                    if ok is None:
                        ok = passed[plan.filter_id] = check.evaluate(event.payload)
                    if not ok:
                        continue
                tags = self._count(plan, state, event, moment)
                if tags:
                    out.extend(tags)
                    if watched:
                        self._record(event, tags, moment)
            return out

    def _count(self, plan: _Plan, state: RuleState, event: Event, moment: float) -> list[Tag]:
        spec = plan.spec
        key = _key(plan, event)
        if key is None:
            return []
        value: str | None = None
        if plan.value is not None:
            raw = plan.value(event.payload)
            if raw is None:
                return []
            value = _bounded(raw)
        group = self._group(plan, key, moment)
        if plan.after and not _after_holds(group, plan.after, moment, spec.timespan):
            return []
        if moment <= group.latch_until:
            return []
        if moment > group.last_time:
            group.last_time = moment
        start = max(group.last_time - spec.timespan, group.latch_until)
        if moment < start:
            return []
        if value is None:
            times = group.items
            if not isinstance(times, list):
                times = group.items = []
            bisect.insort(times, moment)
            cut = bisect.bisect_left(times, start)
            if cut:
                del times[:cut]
            if len(times) < spec.threshold:
                return []
            window_start, count = times[0], len(times)
            group.items = None
            evidence: dict[str, Any] = {"count": count}
        else:
            values = group.items
            if not isinstance(values, dict):
                values = group.items = {}
            if values.get(value, _NEVER) < moment:
                values[value] = moment
            if len(values) < spec.threshold:
                return []
            live = {v: t for v, t in values.items() if t >= start}
            if len(live) < spec.threshold:
                group.items = live
                return []
            window_start = min(live.values())
            evidence = {"distinct": len(live), "values": [
                v[:CORRELATION_EVIDENCE_VALUE_CHARS]
                for v in list(live)[:CORRELATION_EVIDENCE_VALUES]]}
            group.items = None
        group.latch_until = window_start + spec.timespan
        self._stats.windows_fired += 1
        return _tags(plan, state, event, key, evidence, window_start)

    def _group(self, plan: _Plan, key: GroupKey, moment: float) -> _Group:
        """The group of `key`, made most recently used; expired and excess groups go first."""
        groups = self._groups[plan.rule.rule_id]
        group = groups.get(key)
        if group is not None:
            groups.move_to_end(key)
            return group
        cutoff = moment - plan.horizon
        while groups:
            oldest = next(iter(groups))
            if groups[oldest].last_time >= cutoff:
                break
            del groups[oldest]
            self._stats.groups_expired += 1
        group = groups[key] = _Group()
        if len(groups) > self._max_groups:
            groups.popitem(last=False)
            self._stats.groups_evicted += 1
        return group

    def _record(self, event: Event, tags: Iterable[Tag], moment: float) -> None:
        """Note, in each dependent rule's group of `event`, that a prerequisite fired."""
        by_rule, by_technique = self._after_rule, self._after_technique
        for tag in tags:
            waiting = (by_rule.get(tag.rule_id, ()) + by_technique.get(tag.technique_id, ())
                       + (by_technique.get(tag.sub_technique_id, ())
                          if tag.sub_technique_id else ()))
            for name, plan in waiting:
                key = _key(plan, event)
                if key is None:
                    continue
                group = self._group(plan, key, moment)
                if group.prior is None:
                    group.prior = {}
                if group.prior.get(name, _NEVER) < moment:
                    group.prior[name] = moment
                if moment > group.last_time:
                    group.last_time = moment


def _plan(rule: CompiledRule, filter_ids: dict[str, int], lateness: float) -> _Plan:
    spec = rule.correlation
    assert spec is not None
    filter_id = filter_ids.setdefault(f"{rule.rule_id}:{spec.filter_source}"
                                      if not spec.filter_source else spec.filter_source,
                                      len(filter_ids))
    return _Plan(
        rule, spec, filter_id, tuple(_group_getter(f) for f in spec.group_by),
        field_getter(spec.value_field) if spec.value_field else None,
        tuple([f"rule:{r}" for r in spec.after_rules]
              + [f"technique:{t}" for t in spec.after_techniques]),
        spec.timespan + lateness,
    )


def _group_getter(name: str) -> ValueGetter:
    attribute = EVENT_FIELDS.get(name)
    read = field_getter(name)
    if attribute is None:
        return lambda event: read(event.payload)

    def get(event: Event) -> str | None:
        value = getattr(event, attribute)
        return value if value is not None else read(event.payload)

    return get


def _key(plan: _Plan, event: Event) -> GroupKey | None:
    getters = plan.group
    if len(getters) == 1:
        value = getters[0](event)
        return _bounded(value) if value else None
    parts: list[str] = []
    for get in getters:
        value = get(event)
        if not value:
            return None
        parts.append(_bounded(value))
    return tuple(parts)


def _bounded(value: str) -> str:
    """Attacker text as a key: kept when short, its SHA-256 when long."""
    if len(value) <= CORRELATION_MAX_KEY_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def _after_holds(group: _Group, names: tuple[str, ...], moment: float,
                 timespan: float) -> bool:
    prior = group.prior
    if prior is None:
        return False
    for name in names:
        at = prior.get(name)
        if at is None or at > moment or at < moment - timespan:
            return False
    return True


def _same_definition(old: CompiledRule, new: CompiledRule) -> bool:
    return old.rule_version == new.rule_version and old.correlation == new.correlation \
        and old.match_spec == new.match_spec


def _dependency_order(plans: Mapping[str, _Plan]) -> list[str]:
    """Rule ids, each after the rules it waits for (by id or by an emitted technique).

    A cycle falls back to id order.
    """
    emitting: dict[str, set[str]] = {}
    for rid, plan in plans.items():
        for emit in plan.rule.emits:
            emitting.setdefault(f"technique:{emit.technique_id}", set()).add(rid)
            if emit.sub_technique_id:
                emitting.setdefault(f"technique:{emit.sub_technique_id}", set()).add(rid)
    waits: dict[str, set[str]] = {}
    for rid, plan in plans.items():
        needed: set[str] = set()
        for name in plan.after:
            if name.startswith("rule:"):
                needed.add(name[len("rule:"):])
            else:
                needed |= emitting.get(name, set())
        waits[rid] = (needed & plans.keys()) - {rid}
    order: list[str] = []
    done: set[str] = set()
    pending = sorted(plans)
    while pending:
        ready = [rid for rid in pending if waits[rid] <= done]
        if not ready:
            ready = pending[:1]
        for rid in ready:
            order.append(rid)
            done.add(rid)
        pending = [rid for rid in pending if rid not in done]
    return order


def _iso_seconds(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _tags(plan: _Plan, state: RuleState, event: Event, key: GroupKey,
          counted: dict[str, Any], window_start: float) -> list[Tag]:
    rule, spec = plan.rule, plan.spec
    payload = event.payload
    evidence: dict[str, Any] = {f: payload[f] for f in rule.evidence_fields if f in payload}
    evidence.update(counted)
    parts = (key,) if isinstance(key, str) else key
    evidence["group"] = dict(zip(spec.group_by, parts, strict=True))
    evidence["window_start"] = _iso_seconds(window_start)
    evidence["window_end"] = _iso_seconds(window_start + spec.timespan)
    return rule_tags(rule, state, event, evidence)

