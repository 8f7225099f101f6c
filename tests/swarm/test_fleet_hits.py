"""`sum_hits`: the fleet's tags from the workers' reports — sums across workers, minutes
lined up by the clock, samples newest first, and reports that are malformed or hostile."""

from __future__ import annotations

from typing import Any

from decnet.swarm.fleet_hits import Hits, sum_hits
from decnet.ttp.constants import CONSOLE_SAMPLE_TAGS, HITS_MINUTE_BUCKETS

NOW = 1_800_000_030.0
MINUTE = int(NOW // 60)


def sample(at: float, rule_id: str = "R0001", **extra: Any) -> dict[str, Any]:
    return {"at": at, "tag": {"rule_id": rule_id, "tactic": "TA0007", "technique_id": "T1082",
                              "sub_technique_id": None, "evidence": {}, **extra}}


def report(worker: str, **tags: Any) -> dict[str, Any]:
    return {"worker_id": worker, "tags": tags}


def test_the_fleet_sums_its_workers() -> None:
    fleet = sum_hits([
        report("w1", per_minute=[[MINUTE - 1, 4], [MINUTE, 1]],
               rules={"R0001": [5, 9]}, techniques={"TA0007/T1082": [5, 9]},
               omitted={"rules": [2, 1, 3], "techniques": [0, 0, 0]},
               samples=[sample(NOW - 5)]),
        report("w2", per_minute=[[MINUTE - 1, 6], [MINUTE - 90, 1000]],
               rules={"R0001": [1, 1], "R0002": [0, 7]},
               techniques={"TA0007/T1082": [1, 1], "TA0002/T1059": [0, 7]},
               samples=[sample(NOW - 1, "R0002"), sample(NOW - 7200)]),
        {"worker_id": "w3"},  # a worker of a version that does not count: adds nothing
    ], NOW)
    assert fleet.workers == 2
    assert len(fleet.per_minute) == HITS_MINUTE_BUCKETS
    assert (fleet.last_minute, fleet.per_minute[-1], fleet.last_hour) == (10, 1, 11)
    assert fleet.first_minute == MINUTE - HITS_MINUTE_BUCKETS + 1
    assert fleet.rules == {"R0001": Hits(6, 10), "R0002": Hits(0, 7)}
    assert fleet.rule("R9999") == Hits()
    assert fleet.observed("hour") == {("TA0007", "T1082"): 6}
    assert fleet.observed("day") == {("TA0007", "T1082"): 10, ("TA0002", "T1059"): 7}
    assert fleet.omitted == Hits(1, 3)
    hour = fleet.samples_of("TA0007", "T1082", "hour", NOW)
    assert [(s.worker_id, s.tag["rule_id"]) for s in hour] == [("w2", "R0002"), ("w1", "R0001")]
    assert len(fleet.samples_of("TA0007", "T1082", "day", NOW)) == 3


def test_samples_are_capped_per_technique() -> None:
    fleet = sum_hits([report(f"w{n}", samples=[sample(NOW - n - k / 10) for k in range(3)])
                      for n in range(20)], NOW)
    shown = fleet.samples_of("TA0007", "T1082", "day", NOW)
    assert len(shown) == CONSOLE_SAMPLE_TAGS
    assert [s.at for s in shown] == sorted((s.at for s in shown), reverse=True)


def test_malformed_and_hostile_reports_add_nothing_they_should_not() -> None:
    fleet = sum_hits([
        {"worker_id": "<script>", "tags": "not an object"},
        report("w1", per_minute="x", rules=[1, 2], techniques=None, samples={"a": 1}),
        report("w2", per_minute=[[MINUTE, -5], [MINUTE, float("nan")], [MINUTE, True],
                                 ["x", 3], [MINUTE], [MINUTE, 2]],
               rules={"<img src=x onerror=alert(1)>": [1, 1], "R0001": ["9", 9],
                      "R0002": [float("inf"), 1], "R0003": [1, 2, 3], "R0004": "many"},
               techniques={"TA0007/T1082*": [1, 1], "TA0007": [1, 1], "TA0007/T1082": [1, 2],
                           "ta0007/t1082": [5, 5]},
               omitted={"rules": ["a", -1, 2]},
               samples=[{"at": "soon", "tag": {}}, {"at": NOW, "tag": "x"},
                        sample(NOW, tactic="TA0007/../x"), sample(-1),
                        {"at": NOW, "tag": {"tactic": "TA0007", "technique_id": "T1082>"}},
                        sample(NOW, evidence={"cmd": "<script>alert(1)</script>"})]),
    ], NOW)
    assert fleet.per_minute[-1] == 2
    assert fleet.rules == {"R0001": Hits(0, 9), "R0002": Hits(0, 1)}
    assert fleet.techniques == {("TA0007", "T1082"): Hits(1, 2)}
    assert fleet.omitted == Hits(0, 2)
    [kept] = fleet.samples_of("TA0007", "T1082", "hour", NOW)
    assert kept.tag["evidence"] == {"cmd": "<script>alert(1)</script>"}  # escaped where shown
