"""What each console page shows, computed from the rules and states (no HTML here).

Pure functions over `CompiledRule` values so a page's work can be measured without a
browser; every text they return is still untrusted and escaped by the templates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from decnet.swarm.fleet_hits import FleetHits, Hits
from decnet.ttp.constants import (
    CONSOLE_CELL_RULE_IDS,
    CONSOLE_EXPIRING_SOON,
    CONSOLE_MAX_ROWS,
    CONSOLE_RULES_PER_PAGE,
    ENTERPRISE_TACTICS,
)
from decnet.ttp.coverage.tactics import Covered, covered
from decnet.ttp.rules.compiled import CompiledRule
from decnet.vocabulary import HistoryEntry, RuleState, StateName

#: The filters of the rules page, by query parameter (`sort` orders rather than filters).
RULE_FILTERS = ("q", "state", "tactic", "technique", "kind", "scoped", "hits", "sort")
#: `hits`: rules with hits in the last hour, the last day, or none in the last day.
HITS_FILTERS = ("hour", "day", "none")
#: `sort`: by hits in the last hour or day, most first (then by rule id).
SORTS = ("hour", "day")


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
    #: tags in the last hour and day across the fleet; None without fleet reports
    hits: Hits | None = None


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
    #: the fleet's counts were read (else hit columns show a dash)
    with_hits: bool = False
    #: hits of rules the workers' reports did not itemize
    omitted: Hits = field(default_factory=Hits)

    @property
    def unsorted(self) -> dict[str, str]:
        """The filters without the sort (for links that sort otherwise)."""
        return {k: v for k, v in self.filters.items() if k != "sort"}


@dataclass(frozen=True, slots=True)
class Silence:
    """A state with an end, for the overview's list of silences about to lift."""

    rule_id: str
    view: StateView


@dataclass(frozen=True, slots=True)
class HeatCell:
    technique: str
    #: rules covering it (enabled or clipped)
    count: int
    #: the first `CONSOLE_CELL_RULE_IDS` rule ids (a tooltip's worth)
    some_rules: tuple[str, ...]
    #: shade 0-5 of the chosen layer (0: nothing in that layer)
    heat: int
    #: tags observed over the chosen period
    observed: int = 0


@dataclass(frozen=True, slots=True)
class HeatColumn:
    tactic: str
    name: str
    cells: list[HeatCell]


def state_view(state: RuleState, scope: str | None = None) -> StateView:
    return StateView(scope, state.state.value, state.confidence_max, state.expires_at,
                     state.reason, state.set_by, state.set_at)


@dataclass(frozen=True, slots=True)
class TechniqueView:
    """The drill-down of one matrix cell: the rules behind it, its tags and samples."""

    tactic: str
    tactic_name: str
    technique: str
    #: every rule that emits it (a disabled one too: its tags may still be counted)
    rules: list[RuleRow]
    #: tags of it over the period across the fleet; None without fleet reports
    observed: int | None


def rule_row(rule: CompiledRule, now: datetime, hits: FleetHits | None = None) -> RuleRow:
    scopes = tuple(state_view(s.state, s.scope.key) for s in rule.scoped
                   if not s.state.is_expired(now))
    techniques = tuple(sorted({e.sub_technique_id or e.technique_id for e in rule.emits}))
    review = rule.review
    overdue = review.next_review is not None and review.next_review < now.date()
    return RuleRow(rule.rule_id, rule.name, state_view(rule.state.effective(now)), scopes,
                   tuple(sorted({e.tactic for e in rule.emits})), techniques,
                   tuple(sorted(rule.applies_to)), review.last_reviewed, review.next_review,
                   overdue, None if hits is None else hits.rule(rule.rule_id))


def _wanted(rule: CompiledRule, f: Mapping[str, str], now: datetime,
            hits: FleetHits | None) -> bool:
    wanted_hits = f.get("hits")
    if wanted_hits in HITS_FILTERS and hits is not None:
        counted = hits.rule(rule.rule_id)
        has = counted.over(wanted_hits) > 0 if wanted_hits != "none" else counted.day == 0
        if not has:
            return False
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
               now: datetime, hits: FleetHits | None = None, *,
               kinds: list[str] | None = None) -> RuleTable:
    """Page `filters["page"]` (from 1) of the rules that pass `filters`, by rule id (or
    by hits, most first, with `sort`), `CONSOLE_RULES_PER_PAGE` a page. `hits`: the
    fleet's tag counts, for the hit columns, the `hits` filter and the sort; `kinds`:
    every source kind of `rules`, when known."""
    clean = {k: filters[k].strip() for k in RULE_FILTERS if filters.get(k, "").strip()}
    matched = [r for r in rules if _wanted(r, clean, now, hits)] if clean else list(rules)
    matched.sort(key=lambda r: r.rule_id)
    sort = clean.get("sort")
    if sort in SORTS and hits is not None:
        matched.sort(key=lambda r: -hits.rule(r.rule_id).over(sort))
    pages = max(1, -(-len(matched) // CONSOLE_RULES_PER_PAGE))
    wanted = filters.get("page", "1").strip()
    page = min(pages, int(wanted)) if wanted.isascii() and wanted.isdigit() and \
        int(wanted) >= 1 else 1
    first = (page - 1) * CONSOLE_RULES_PER_PAGE
    if kinds is None:
        kinds = sorted({k for r in rules for k in r.applies_to})
    return RuleTable([rule_row(r, now, hits)
                      for r in matched[first:first + CONSOLE_RULES_PER_PAGE]],
                     len(rules), len(matched), clean, list(ENTERPRISE_TACTICS), kinds,
                     page, pages, first, hits is not None,
                     Hits() if hits is None else hits.omitted)


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


def heatmap(rules: Iterable[CompiledRule], now: datetime,
            observed: Mapping[tuple[str, str], int] | None = None,
            shade: str = "covered", *,
            entries: Iterable[Covered] | None = None) -> list[HeatColumn]:
    """One column per enterprise tactic; each technique covered by a rule or `observed`
    in tags ((tactic, technique) -> tags), shaded 1-5 by its rules (`shade="covered"`: 1
    rule, 2, 3-4, 5-9, 10 or more) or by its tags (`"observed"`: 1-9, 10-99, 100-999,
    1,000-9,999, 10,000 or more)."""
    columns = {tactic: HeatColumn(tactic, name, []) for tactic, name in
               ENTERPRISE_TACTICS.items()}
    seen = dict(observed or {})
    by_key = {(e.tactic, e.technique): e
              for e in (covered(rules, now) if entries is None else entries)}
    for key in sorted(set(by_key) | set(seen), key=lambda k: k[1]):
        column = columns.get(key[0])
        if column is None:
            continue
        entry = by_key.get(key)
        ids = tuple(sorted(entry.rules)) if entry is not None else ()
        tags = seen.get(key, 0)
        heat = _tag_heat(tags) if shade == "observed" else _rule_heat(len(ids))
        column.cells.append(HeatCell(key[1], len(ids), ids[:CONSOLE_CELL_RULE_IDS], heat,
                                     tags))
    return list(columns.values())


def _rule_heat(count: int) -> int:
    return 0 if count == 0 else 1 if count == 1 else 2 if count == 2 else \
        3 if count <= 4 else 4 if count <= 9 else 5


def _tag_heat(count: int) -> int:
    return 0 if count <= 0 else min(5, len(str(count)))


def technique_view(rules: Iterable[CompiledRule], tactic: str, technique: str,
                   now: datetime, hits: FleetHits | None, period: str) -> TechniqueView:
    """The rules of `rules` that emit `technique` under `tactic` (covering or not, most
    hits over `period` first) and the fleet's tags of it over `period`."""
    emitting = [r for r in rules if any(
        e.tactic == tactic and technique in (e.technique_id, e.sub_technique_id)
        for e in r.emits)]
    rows = [rule_row(r, now, hits) for r in sorted(emitting, key=lambda r: r.rule_id)]
    if hits is not None:
        rows.sort(key=lambda row: -(row.hits or Hits()).over(period))
    observed = None if hits is None else \
        hits.techniques.get((tactic, technique), Hits()).over(period)
    return TechniqueView(tactic, ENTERPRISE_TACTICS.get(tactic, tactic), technique, rows,
                         observed)


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
