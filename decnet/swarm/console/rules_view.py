"""The console's view of the rules, kept per database revision.

Every page needs the whole pack (10,000 rules is 80 ms of `load_compiled` and a burst of
garbage), but the pack changes only with a revision. `RulesCache.current()` costs one
cheap head query while the head stays and no state in the view has ended (an expired
silence reads as enabled before any process reverts it). When the head moved, the view is
brought forward from the change log (the changed rules alone: states, scoped states,
definitions added, changed or removed); another database, a gap, more than
`CONSOLE_ADVANCE_MAX` changes or `CONSOLE_ADVANCE_NEW_MAX` new rules load the whole pack.
What pages derive from the whole pack (facets, ends, heatmap, Navigator layer, rule test
reports) is computed at most once per view, on first use.

Memory: one view at a time (a page that holds the previous one keeps it alive only
while it renders): the compiled rules once more than the store's compile cache holds
them, the layer's JSON (about 2.5 MB at 10,000 rules), and at most
`CONSOLE_TEST_REPORTS` test reports.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from decnet.swarm.console.views import HeatColumn, Silence, heatmap, upcoming_ends
from decnet.ttp.constants import (
    CONSOLE_ADVANCE_MAX,
    CONSOLE_ADVANCE_NEW_MAX,
    CONSOLE_GC_UNFREEZE,
    CONSOLE_TEST_REPORTS,
)
from decnet.ttp.coverage import layer_from_rules
from decnet.ttp.coverage.tactics import Covered, covered
from decnet.ttp.errors import RuleSetError, StoreError
from decnet.ttp.jobs.rule_tests import TestReport, rule_tests, run_rule_tests
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.sql.rows import Head, LogEntry, StoredRule
from decnet.vocabulary import DEFAULT_STATE, DEFINITION, DELETED, SCOPED, STATE, ScopedState

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RulesView:
    """The rules at `head`, with effective states as of `built_at`, good until
    `valid_until` (the earliest state end; None: no state ends)."""

    head: Head
    built_at: datetime
    #: by rule id
    rules: list[CompiledRule]
    by_id: dict[str, CompiledRule]
    #: every source kind a rule applies to (the rules page's filter)
    kinds: list[str]
    #: every unexpired state with an end, soonest first
    ends: list[Silence]
    _covered: list[Covered] | None = None
    _heatmap: list[HeatColumn] | None = None
    _layer: bytes | None = None
    _tests: OrderedDict[str, TestReport | None] = field(default_factory=OrderedDict)

    @property
    def valid_until(self) -> datetime | None:
        return self.ends[0].view.expires_at if self.ends else None

    def is_current(self, head: Head, now: datetime) -> bool:
        until = self.valid_until
        return head == self.head and (until is None or now < until)

    def expiring(self, now: datetime, within: float) -> list[Silence]:
        """The states that end after `now` and within `within` seconds, soonest first."""
        horizon = now + timedelta(seconds=within)
        return [s for s in self.ends
                if s.view.expires_at is not None and now < s.view.expires_at <= horizon]

    def heatmap(self, observed: Mapping[tuple[str, str], int] | None = None,
                shade: str = "covered") -> list[HeatColumn]:
        """The matrix; the rules' coverage is computed once per view, the fleet's
        `observed` tags (which change between views) are laid over it on each call."""
        if self._covered is None:
            self._covered = covered(self.rules, self.built_at)
        if observed is not None or shade != "covered":
            return heatmap(self.rules, self.built_at, observed, shade, entries=self._covered)
        if self._heatmap is None:
            self._heatmap = heatmap(self.rules, self.built_at, entries=self._covered)
        return self._heatmap

    def layer_json(self) -> bytes:
        """The Navigator layer of the rules, as indented JSON."""
        if self._layer is None:
            self._layer = orjson.dumps(layer_from_rules(self.rules, now=self.built_at),
                                       option=orjson.OPT_INDENT_2)
        return self._layer

    def test_report(self, rule: CompiledRule) -> TestReport | None:
        """The results of `rule`'s own tests (None: it has none), run with its helpers."""
        if rule.rule_id in self._tests:
            self._tests.move_to_end(rule.rule_id)
            return self._tests[rule.rule_id]
        tests, _ = rule_tests(rule)
        report = None
        if tests is not None:
            helpers = [self.by_id[r] for r in tests.with_rules if r in self.by_id]
            report = run_rule_tests([rule, *helpers])
            report.results = [r for r in report.results if r.rule_id == rule.rule_id]
        self._tests[rule.rule_id] = report
        while len(self._tests) > CONSOLE_TEST_REPORTS:
            self._tests.popitem(last=False)
        return report


def build_view(head: Head, rules: list[CompiledRule], now: datetime) -> RulesView:
    ordered = sorted(rules, key=lambda r: r.rule_id)
    return RulesView(head, now, ordered, {r.rule_id: r for r in ordered},
                     sorted({k for r in ordered for k in r.applies_to}),
                     upcoming_ends(ordered, now))


def _compiled(row: StoredRule) -> CompiledRule | None:
    """The stored `row` compiled (None: it does not compile, and the rule is absent, as
    `load_compiled` leaves it out)."""
    try:
        return compile_rule(row.yaml_content, source=row.source_path or
                            f"ttp_rule/{row.rule_id}", expected_rule_id=row.rule_id,
                            keep_source=False)
    except RuleSetError:
        return None


def _redefined(rule: CompiledRule | None, row: StoredRule,
               scoped: tuple[ScopedState, ...]) -> CompiledRule | None:
    """`rule` (None: a new one, whose scoped states are `scoped`) as `row` defines it now."""
    if rule is not None and row.rule_version == rule.rule_version and (
            row.yaml_content == rule.source_yaml if rule.source_yaml else
            hashlib.sha256(row.yaml_content.encode("utf-8")).digest() == rule.source_digest):
        return rule
    compiled = _compiled(row)
    return None if compiled is None else \
        compiled.with_scoped(scoped if rule is None else rule.scoped)


def advanced(view: RulesView, head: Head, entries: list[LogEntry], now: datetime,
             new_scoped: Mapping[str, tuple[ScopedState, ...]] | None = None,
             ) -> RulesView | None:
    """`view` brought to `head` by the change-log `entries` past it (each joined with its
    rule's current rows), with the states that ended by `now` reverted; None when only a
    full load can say: another database, a gap in the log, a new rule without its scoped
    states in `new_scoped` (read beside the entries: they are not in them).
    """
    new_scoped = new_scoped or {}
    if head.identity != view.head.identity or \
            len(entries) != head.revision - view.head.revision:
        return None
    #: rule id -> the rule now, None: gone
    changed: dict[str, CompiledRule | None] = {}
    for end in view.ends:
        if end.view.expires_at is None or end.view.expires_at > now:
            break
        ending = changed.get(end.rule_id) or view.by_id[end.rule_id]
        changed[end.rule_id] = ending.with_state(ending.state.effective(now)).with_scoped(
            tuple(s for s in ending.scoped if not s.state.is_expired(now)))
    defined = False
    for entry in entries:
        if entry.database != head.identity or \
                entry.change_kind not in (STATE, SCOPED, DEFINITION, DELETED):
            return None
        rule_id = entry.rule_id
        rule = changed[rule_id] if rule_id in changed else view.by_id.get(rule_id)
        if entry.change_kind in (DEFINITION, DELETED):
            defined = True
            if entry.rule is None:
                changed[rule_id] = None
                continue
            if rule is None and rule_id not in new_scoped:
                return None
            rule = _redefined(rule, entry.rule, tuple(
                s for s in new_scoped.get(rule_id, ()) if not s.state.is_expired(now)))
        if rule is None:
            if rule_id in view.by_id:
                changed[rule_id] = None
            continue  # else a state of a rule without definition: no page shows it
        rule = rule.with_state(DEFAULT_STATE if entry.state is None
                               else entry.state.state.effective(now))
        if entry.scoped is not None:
            rule = rule.with_scoped(tuple(s for s in entry.scoped.states
                                          if not s.state.is_expired(now)))
        changed[rule_id] = rule
    by_id = dict(view.by_id)
    for rule_id, now_rule in changed.items():
        if now_rule is None:
            by_id.pop(rule_id, None)
        else:
            by_id[rule_id] = now_rule
    rules = [by_id[r.rule_id] for r in view.rules if r.rule_id in by_id]
    if len(rules) != len(by_id):  # new rules
        rules = sorted(by_id.values(), key=lambda r: r.rule_id)
    kinds = sorted({k for r in rules for k in r.applies_to}) if defined else view.kinds
    ends = [s for s in view.ends if s.rule_id not in changed and s.view.expires_at is not None
            and now < s.view.expires_at] + upcoming_ends(
                [r for r in changed.values() if r is not None], now)
    ends.sort(key=lambda s: (s.view.expires_at or now, s.rule_id))
    return RulesView(head, now, rules, by_id, kinds, ends)


class HeapFreezer:
    """Keeps the long-lived rules out of the garbage collector's full passes.

    A full collection walks every tracked object: with 10,000 rules in memory that is
    100-300 ms, and page requests trigger one every few dozen requests. After a view is
    built, `gc.freeze()` moves everything alive to the permanent generation, which full
    collections skip. Cyclic garbage among frozen objects is not collected until the next
    `gc.unfreeze()`, so at most every `CONSOLE_GC_UNFREEZE` seconds the next build unfreezes
    and collects everything once first. Process-wide: only the master's console uses it.
    """

    def __init__(self, every: float = CONSOLE_GC_UNFREEZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._collected = clock()

    def after_build(self) -> None:
        if self.clock() - self._collected >= self.every:
            gc.unfreeze()
            gc.collect()
            self._collected = self.clock()
        gc.freeze()


class RulesCache:
    """The current `RulesView` of `store`; one load at a time however many pages ask.
    `freezer`: keeps each new view out of full garbage collections (the master's)."""

    def __init__(self, store: DatabaseRuleStore,
                 clock: Callable[[], datetime] | None = None, *,
                 freezer: HeapFreezer | None = None) -> None:
        self.store = store
        self.clock = clock or store.clock
        self.freezer = freezer
        self._view: RulesView | None = None
        self._lock = asyncio.Lock()
        #: whole loads, and views brought forward from the change log (tests read them)
        self.loads = 0
        self.advances = 0

    async def current(self) -> RulesView:
        """The view at the database's head now. When the head cannot be read, the last
        view (if any) is served, as `load_compiled` serves its last good rules."""
        try:
            head = await self.store.repo.head()
        except StoreError:
            if self._view is None:
                raise
            return self._view
        view = self._view
        if view is not None and view.is_current(head, self.clock()):
            return view
        async with self._lock:
            view = self._view
            if view is not None and view.is_current(head, self.clock()):
                return view
            # rows read after `head` are at least that new: a later head reloads again;
            # ends counted from before the read: one passing meanwhile reloads again too
            before = self.clock()
            new = None if view is None else await self._advance(view, head, before)
            if new is None:
                new = build_view(head, await self.store.load_compiled(), before)
                self.loads += 1
            else:
                self.advances += 1
            self._view = new
            if self.freezer is not None:
                self.freezer.after_build()
            return new

    async def _advance(self, view: RulesView, head: Head, now: datetime) -> RulesView | None:
        """`view` at `head` from the change log alone, when it can be (see `advanced`)."""
        behind = head.revision - view.head.revision
        if head.identity != view.head.identity or not 0 <= behind <= CONSOLE_ADVANCE_MAX:
            return None
        entries = [] if behind == 0 else \
            await self.store.repo.changes_since(view.head.revision, head.revision, behind)
        new = {e.rule_id for e in entries if e.change_kind is DEFINITION and e.rule is not None
               and e.rule_id not in view.by_id}
        if len(new) > CONSOLE_ADVANCE_NEW_MAX:
            return None
        scoped = {rule_id: (await self.store.repo.read_scoped(rule_id)).states
                  for rule_id in sorted(new)}
        return advanced(view, head, entries, now, scoped)
