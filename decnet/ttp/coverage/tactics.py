"""Which techniques a rule set emits, per tactic, and which rules cover each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from decnet.ttp.constants import ENTERPRISE_TACTICS
from decnet.ttp.rules.compiled import CompiledRule
from decnet.vocabulary import StateName


@dataclass(slots=True)
class Covered:
    """One technique (or sub-technique) under one tactic, and the rules that emit it."""

    technique: str
    tactic: str
    #: rule id -> (rule name, confidence after the rule's state, lifter name or None)
    rules: dict[str, tuple[str, float, str | None]] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        """The best confidence any covering rule gives."""
        return max(c for _, c, _ in self.rules.values())


@dataclass(frozen=True, slots=True)
class TacticCoverage:
    """One row of the coverage table: a tactic, its techniques, the rules behind them."""

    tactic: str
    name: str
    techniques: tuple[str, ...]
    rules: tuple[str, ...]


def covered(rules: Iterable[CompiledRule], now: datetime | None = None) -> list[Covered]:
    """Every (technique, tactic) the rules emit, most specific id of each emit.

    A disabled rule covers nothing; a clipped one covers at its ceiling. Sorted by
    tactic (matrix order), then technique id.
    """
    moment = now or datetime.now(UTC)
    found: dict[tuple[str, str], Covered] = {}
    for rule in rules:
        state = rule.state.effective(moment)
        if state.state is StateName.DISABLED:
            continue
        for emit in rule.emits:
            technique = emit.sub_technique_id or emit.technique_id
            entry = found.setdefault((technique, emit.tactic), Covered(technique, emit.tactic))
            entry.rules[rule.rule_id] = (rule.name, state.clamp(emit.confidence), rule.lifter)
    order = {tactic: n for n, tactic in enumerate(ENTERPRISE_TACTICS)}
    return sorted(found.values(), key=lambda c: (order.get(c.tactic, len(order)), c.technique))


def coverage_by_tactic(rules: Iterable[CompiledRule],
                       now: datetime | None = None) -> list[TacticCoverage]:
    """One row per enterprise tactic, in matrix order, uncovered tactics included."""
    entries = covered(rules, now)
    rows: list[TacticCoverage] = []
    for tactic, name in ENTERPRISE_TACTICS.items():
        mine = [c for c in entries if c.tactic == tactic]
        rows.append(TacticCoverage(
            tactic, name, tuple(c.technique for c in mine),
            tuple(sorted({r for c in mine for r in c.rules})),
        ))
    return rows
