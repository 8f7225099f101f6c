"""Rule files in the anchor project's shapes load unchanged; lifters run or say what they need.

The files under `anchor_shapes/` are written for this project in the shapes the anchor's
pack uses (its kinds, lifter options, sentinel emits, review keys); none is copied from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from decnet.cli.app import app
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, Tag
from decnet.ttp.errors import RuleSetError
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.loader import load_directory

SHAPES = Path(__file__).parent / "anchor_shapes"
RUNNING = {"A0001", "A0002", "A0003", "A0005", "A0006", "A0012"}
T0 = 1_780_000_000.0


def test_every_shape_loads_and_each_lifter_runs_or_warns() -> None:
    result = load_directory(SHAPES)
    assert result.errors == []
    assert len(result.rules) == len(list(SHAPES.glob("*.yaml")))
    for rule_id, rule in result.rules.items():
        if rule_id in RUNNING:
            assert rule.fires, rule_id
            assert not rule.warnings, rule_id
        else:
            assert not rule.fires, rule_id
            (warning,) = [w for w in rule.warnings if w.startswith("lifter:")]
            assert f"lifter:{rule.lifter} is not built into decnet-ttp" in warning
            for field in rule.evidence_fields:
                assert field in warning
    assert any("next_review 2026-08-01 is in the past" in w
               for w in result.rules["A0011"].warnings)


def test_validate_names_what_each_lifter_needs() -> None:
    result = CliRunner().invoke(app, ["rules", "validate", str(SHAPES)])
    assert result.exit_code == 0, result.output
    assert "lifter:beaconing is not built into decnet-ttp" in result.output
    assert "beacon_interval_s" in result.output
    assert "14 rule(s) valid, 0 error(s)" in result.output


def _login(n: int, *, user: str = "root", password: str = "x", result: str = "failed",
           ip: str = "203.0.113.9") -> Event:
    return Event("auth_attempt", f"a{n}",
                 {"username": user, "password": password, "result": result},
                 src_ip=ip, timestamp=T0 + n)


def _fired(engine: RuleEngine, events: list[Event]) -> list[Tag]:
    return [t for e in events for t in engine.evaluate(e)]


def test_mapped_credential_lifters_fire_on_logins() -> None:
    engine = RuleEngine(load_directory(SHAPES).rules.values())
    # A0001: four failures in two minutes; A0002: three passwords for one user;
    # A0003: one password against three users; A0005: success after T1110
    events = [_login(0, password="a"), _login(1, password="b"), _login(2, password="c"),
              _login(3, user="pi", password="c"), _login(4, user="git", password="c"),
              _login(5, password="d", result="success")]
    by_rule: dict[str, list[str]] = {}
    for tag in _fired(engine, events):
        by_rule.setdefault(tag.rule_id, []).append(tag.source_id)
    assert by_rule == {"A0002": ["a2"], "A0001": ["a3"], "A0003": ["a4"], "A0005": ["a5"]}


def test_mapped_lifters_near_misses() -> None:
    engine = RuleEngine(load_directory(SHAPES).rules.values())
    slow = [_login(n * 60, password=str(n % 2)) for n in range(4)]  # 4 failures over 3 min
    assert {t.rule_id for t in _fired(engine, slow)} == set()
    assert _fired(engine, [_login(500, result="success", password="p")]) == []


def test_default_credential_pairs_match_per_event() -> None:
    engine = RuleEngine(load_directory(SHAPES).rules.values())
    assert [t.rule_id for t in engine.match(_login(0, user="admin", password=""))] == ["A0006"]
    assert engine.match(_login(1, user="admin", password="admin")) == []
    assert [t.rule_id for t in engine.match(_login(2, user="ubnt", password="ubnt"))] == \
        ["A0006"]


RULE = """\
rule_id: R0001
rule_version: 1
name: n
applies_to: [{kind}]
match: {match}
emits:
  - {{tactic: TA0007, technique_id: T1082, confidence: 0.5}}
"""


def test_any_lowercase_kind_is_valid_and_defaults_apply() -> None:
    rule = compile_rule(RULE.format(kind="intel", match="{equals: malicious}"), source="x")
    assert rule.matchers["intel"]({"verdict": "malicious"})
    rule = compile_rule(RULE.format(kind="canary_fingerprint", match="{contains: Headless}"),
                        source="x")
    assert rule.matchers["canary_fingerprint"]({"ua_signature": "HeadlessChrome/120"})
    rule = compile_rule(RULE.format(kind="ssh_client_v2",
                                    match="{field: version, contains: libssh}"), source="x")
    engine = RuleEngine([rule])
    event = Event("ssh_client_v2", "k", {"version": "SSH-2.0-libssh_0.9.6"})
    assert [t.rule_id for t in engine.evaluate(event)] == ["R0001"]


@pytest.mark.parametrize("match", ["{pattern: x}", "{any: [{field: a, equals: b}, {contains: c}]}"])
def test_a_pattern_on_a_kind_without_default_field_must_name_it(match: str) -> None:
    with pytest.raises(RuleSetError) as caught:
        compile_rule(RULE.format(kind="session", match=match), source="R0001.yaml")
    (error,) = caught.value.errors
    assert "source kind 'session' has no default field; name one with match.field" \
        in error.reason
    assert error.field is not None and error.field.startswith("match")


@pytest.mark.parametrize("kind", ["Session", "1kind", "a-b", "a" * 65, ""])
def test_kinds_outside_the_vocabulary_are_refused(kind: str) -> None:
    with pytest.raises(RuleSetError) as caught:
        compile_rule(RULE.format(kind=repr(kind), match="{field: f, equals: x}"), source="x")
    assert caught.value.errors[0].field == "applies_to"


@pytest.mark.parametrize(("options", "reason"), [
    ("fail_threshold: 0, window_minutes: 5", "fail_threshold must be a positive"),
    ("fail_threshold: 5, window_minutes: many", "window_minutes must be a positive"),
])
def test_bad_lifter_options_are_errors(options: str, reason: str) -> None:
    text = RULE.format(kind="auth_attempt",
                       match=f"{{kind: 'lifter:auth_brute_generic', {options}}}")
    with pytest.raises(RuleSetError) as caught:
        compile_rule(text, source="R0001.yaml")
    assert reason in caught.value.errors[0].reason
