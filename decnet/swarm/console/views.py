"""What each console page shows, computed from the rules and states (no HTML here).

Pure functions over `CompiledRule` values so a page's work can be measured without a
browser; every text they return is still untrusted and escaped by the templates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from decnet.ttp.constants import (
    CONSOLE_CELL_RULE_IDS,
    CONSOLE_EXPIRING_SOON,
    CONSOLE_MAX_ROWS,
    CONSOLE_RULES_PER_PAGE,
    ENTERPRISE_TACTICS,
)
from decnet.ttp.coverage.tactics import covered
from decnet.ttp.rules.compiled import CompiledRule
from decnet.vocabulary import HistoryEntry, RuleState, StateName

#: The filters of the rules page, by query parameter.
RULE_FILTERS = ("q", "state", "tactic", "technique", "kind", "scoped")


@dataclass(frozen=True, slots=True)
class StateView:
    """One state (unscoped or scoped) as a table cell shows it."""

    scope: str | None
    state: str
    confidence_max: float | None
    expires_at: datetime | None
    reason: str | None
    set_by: str | None
    set_at: datetime | None


@dataclass(frozen=True, slots=True)
class RuleRow:
    rule_id: str
    name: str
    state: StateView
    scopes: tuple[StateView, ...]
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    kinds: tuple[str, ...]
    last_reviewed: date | None
    next_review: date | None
    review_overdue: bool


@dataclass(frozen=True, slots=True)
class RuleTable:
    rows: list[RuleRow]
    total: int
    matched: int
    filters: dict[str, str]
    tactics: list[str]
    kinds: list[str]
    page: int
    pages: int
    first: int


@dataclass(frozen=True, slots=True)
class Silence:
    """A state with an end, for the overview's list of silences about to lift."""

    rule_id: str
    view: StateView


@dataclass(frozen=True, slots=True)
class HeatCell:
    technique: str
    count: int
    #: the first `CONSOLE_CELL_RULE_IDS` rule ids (a tooltip's worth)
    some_rules: tuple[str, ...]
    heat: int


@dataclass(frozen=True, slots=True)
class HeatColumn:
    tactic: str
    name: str
    cells: list[HeatCell]


def state_view(state: RuleState, scope: str | None = None) -> StateView:
    return StateView(scope, state.state.value, state.confidence_max, state.expires_at,
                     state.reason, state.set_by, state.set_at)


def rule_row(rule: CompiledRule, now: datetime) -> RuleRow:
    scopes = tuple(state_view(s.state, s.scope.key) for s in rule.scoped
                   if not s.state.is_expired(now))
    techniques = tuple(sorted({e.sub_technique_id or e.technique_id for e in rule.emits}))
    review = rule.review
    overdue = review.next_review is not None and review.next_review < now.date()
    return RuleRow(rule.rule_id, rule.name, state_view(rule.state.effective(now)), scopes,
                   tuple(sorted({e.tactic for e in rule.emits})), techniques,
                   tuple(sorted(rule.applies_to)), review.last_reviewed, review.next_review,
                   overdue)


def _wanted(rule: CompiledRule, f: Mapping[str, str], now: datetime) -> bool:
    if f.get("state") and rule.state.effective(now).state.value != f["state"]:
        return False
    if f.get("tactic") and all(e.tactic != f["tactic"] for e in rule.emits):
        return False
    technique = f.get("technique", "").upper()
    if technique and all(technique not in (e.technique_id, e.sub_technique_id)
                         for e in rule.emits):
        return False
    if f.get("kind") and f["kind"] not in rule.applies_to:
        return False
    scoped = f.get("scoped")
    live_scopes = any(not s.state.is_expired(now) for s in rule.scoped)
    if (scoped == "yes" and not live_scopes) or (scoped == "no" and live_scopes):
        return False
    q = f.get("q", "").casefold()
    return not q or q in rule.rule_id.casefold() or q in rule.name.casefold() \
        or q in rule.description.casefold()


def rule_table(rules: Sequence[CompiledRule], filters: Mapping[str, str],
               now: datetime, *, kinds: list[str] | None = None) -> RuleTable:
    """Page `filters["page"]` (from 1) of the rules that pass `filters`, by rule id,
    `CONSOLE_RULES_PER_PAGE` a page; `kinds`: every source kind of `rules`, when known."""
    clean = {k: filters[k].strip() for k in RULE_FILTERS if filters.get(k, "").strip()}
    matched = [r for r in rules if _wanted(r, clean, now)] if clean else list(rules)
    matched.sort(key=lambda r: r.rule_id)
    pages = max(1, -(-len(matched) // CONSOLE_RULES_PER_PAGE))
    wanted = filters.get("page", "1").strip()
    page = min(pages, int(wanted)) if wanted.isascii() and wanted.isdigit() and \
        int(wanted) >= 1 else 1
    first = (page - 1) * CONSOLE_RULES_PER_PAGE
    if kinds is None:
        kinds = sorted({k for r in rules for k in r.applies_to})
    return RuleTable([rule_row(r, now) for r in matched[first:first + CONSOLE_RULES_PER_PAGE]],
                     len(rules), len(matched), clean, list(ENTERPRISE_TACTICS), kinds,
                     page, pages, first)


def upcoming_ends(rules: Iterable[CompiledRule], now: datetime) -> list[Silence]:
    """Every state (unscoped or scoped) that ends after `now`, soonest first."""
    found: list[Silence] = []
    for rule in rules:
        states = [(None, rule.state)] + [(s.scope.key, s.state) for s in rule.scoped]
        for scope, state in states:
            if state.expires_at is not None and now < state.expires_at:
                found.append(Silence(rule.rule_id, state_view(state, scope)))
    found.sort(key=lambda s: (s.view.expires_at or now, s.rule_id))
    return found


def expiring(rules: Iterable[CompiledRule], now: datetime,
             within: float = CONSOLE_EXPIRING_SOON) -> list[Silence]:
    """Unexpired states with an end within `within` seconds, soonest first."""
    horizon = now + timedelta(seconds=within)
    return [s for s in upcoming_ends(rules, now)
            if s.view.expires_at is not None and s.view.expires_at <= horizon]


def heatmap(rules: Iterable[CompiledRule], now: datetime) -> list[HeatColumn]:
    """One column per enterprise tactic; each covered technique with its rules and a heat
    level 1-5 (1 rule, 2, 3-4, 5-9, 10 or more)."""
    columns = {tactic: HeatColumn(tactic, name, []) for tactic, name in
               ENTERPRISE_TACTICS.items()}
    for entry in covered(rules, now):
        column = columns.get(entry.tactic)
        if column is None:
            continue
        ids = tuple(sorted(entry.rules))
        count = len(ids)
        heat = 1 if count == 1 else 2 if count == 2 else 3 if count <= 4 else \
            4 if count <= 9 else 5
        column.cells.append(HeatCell(entry.technique, count, ids[:CONSOLE_CELL_RULE_IDS], heat))
    return list(columns.values())


def history_filtered(entries: Iterable[HistoryEntry], *, person: str | None,
                     until: datetime | None) -> list[HistoryEntry]:
    """`entries` by `person` (their `by` or the token in `via`) up to `until`, newest
    first, at most `CONSOLE_MAX_ROWS`."""
    kept = [e for e in entries
            if (not person or person in {e.by, e.via}) and (until is None or e.at <= until)]
    kept.reverse()
    return kept[:CONSOLE_MAX_ROWS]


def is_silence(name: str) -> bool:
    return name in {StateName.DISABLED.value, StateName.CLIPPED.value}
