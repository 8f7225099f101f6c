"""What the console's pages compute: paging and filters of the rules table, silences
about to expire, heat levels of the coverage matrix, the history filter."""

from __future__ import annotations

from datetime import timedelta

from bench.synthetic import rule_id, rule_yaml
from decnet.swarm.console.views import expiring, heatmap, history_filtered, rule_table
from decnet.ttp.constants import CONSOLE_RULES_PER_PAGE
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule
from decnet.vocabulary import HistoryEntry, RuleState, Scope, ScopedState, StateName, utcnow

NOW = utcnow()


def rules(count: int) -> list[CompiledRule]:
    return [compile_rule(rule_yaml(n), source=f"{rule_id(n)}.yaml") for n in range(count)]


def test_the_rules_table_pages_through_every_match() -> None:
    pack = rules(2 * CONSOLE_RULES_PER_PAGE + 7)
    first = rule_table(pack, {}, NOW)
    assert (first.page, first.pages, len(first.rows)) == (1, 3, CONSOLE_RULES_PER_PAGE)
    last = rule_table(pack, {"page": "3"}, NOW)
    assert len(last.rows) == 7 and last.rows[-1].rule_id == rule_id(len(pack) - 1)
    seen = [r.rule_id for p in ("1", "2", "3") for r in rule_table(pack, {"page": p}, NOW).rows]
    assert seen == sorted(r.rule_id for r in pack)
    for odd in ("0", "-1", "x", "99", "٣"):
        assert rule_table(pack, {"page": odd}, NOW).page in {1, 3}


def test_filters_narrow_the_rules() -> None:
    pack = rules(30)
    pack[3] = pack[3].with_state(RuleState(StateName.DISABLED, reason="noisy"))
    pack[5] = pack[5].with_scoped((ScopedState(
        Scope(frozenset({"decky-1"})), RuleState(StateName.CLIPPED, confidence_max=0.2)),))
    assert [r.rule_id for r in rule_table(pack, {"state": "disabled"}, NOW).rows] == \
        [rule_id(3)]
    assert [r.rule_id for r in rule_table(pack, {"scoped": "yes"}, NOW).rows] == [rule_id(5)]
    assert rule_table(pack, {"scoped": "no"}, NOW).matched == 29
    assert [r.rule_id for r in rule_table(pack, {"q": "synthetic_17"}, NOW).rows] == \
        [rule_id(17)]
    assert rule_table(pack, {"technique": "t1059.004", "tactic": "TA0002"}, NOW).matched == 30
    assert rule_table(pack, {"tactic": "TA0001"}, NOW).matched == 0
    assert rule_table(pack, {"kind": "http_request"}, NOW).matched == 0


def test_silences_about_to_expire_soonest_first() -> None:
    pack = rules(4)
    soon = RuleState(StateName.DISABLED, expires_at=NOW + timedelta(minutes=5))
    sooner = RuleState(StateName.CLIPPED, confidence_max=0.1,
                       expires_at=NOW + timedelta(minutes=1))
    later = RuleState(StateName.DISABLED, expires_at=NOW + timedelta(days=1))
    pack[0] = pack[0].with_state(soon)
    pack[1] = pack[1].with_scoped((ScopedState(Scope(sensors=frozenset({"s1"})), sooner),))
    pack[2] = pack[2].with_state(later)
    found = expiring(pack, NOW)
    assert [(s.rule_id, s.view.scope) for s in found] == [(rule_id(1), "sensor=s1"),
                                                          (rule_id(0), None)]


def test_heat_grows_with_the_rules_behind_a_technique() -> None:
    columns = {c.tactic: c for c in heatmap(rules(12), NOW)}
    assert len(columns) == 14
    [cell] = columns["TA0007"].cells
    assert (cell.technique, cell.count, cell.heat) == ("T1082", 12, 5)
    assert len(cell.some_rules) <= 20
    assert heatmap(rules(1), NOW)[0].cells == []  # TA0043: nothing covers it


def test_history_by_person_or_token_newest_first() -> None:
    def entry(by: str, via: str, minutes: int) -> HistoryEntry:
        return HistoryEntry("R1", "set", None, None, RuleState(StateName.DISABLED), by,
                            "why", NOW - timedelta(minutes=minutes), via)

    entries = [entry("alice", "host1", 30), entry("bob", "tok-ci", 20),
               entry("alice", "tok-ci", 10)]
    assert [e.at for e in history_filtered(entries, person="tok-ci", until=None)] == \
        [entries[2].at, entries[1].at]
    assert history_filtered(entries, person="alice",
                            until=NOW - timedelta(minutes=15)) == [entries[0]]
