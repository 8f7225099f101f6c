"""The stored form: a rule loaded from it is the rule its YAML compiles to, or refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from decnet.ttp.rules import stored_form
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.stored_form import (
    StoredFormError,
    compile_form,
    compiler_id,
    derive_form,
)

PACK = Path(__file__).resolve().parents[3] / "rules" / "ttp"

RULE = """\
rule_id: F0001
rule_version: 3
name: form_test
description: unquoted dates, a fallback pattern, tests
applies_to: [command, http_request]
match:
  any:
    - pattern: '(?i)wget\\s+http'
    - {pattern: '(a)\\1', field: command_text}
    - {contains: curl, case_insensitive: true, field: command_text}
emits:
  - {tactic: TA0011, technique_id: T1105, confidence: 0.6}
evidence_fields: [command_text]
last_reviewed: 2026-11-01
next_review: 2020-01-01
tests:
  fires:
    - event: {source_kind: command, payload: {command_text: wget http://x}}
"""


def loaded(text: str, rule_id: str) -> object:
    form = derive_form(text, source=f"{rule_id}.yaml", rule_id=rule_id)
    assert form is not None
    return compile_form(form, text, source=f"{rule_id}.yaml", expected_rule_id=rule_id)


def same(a: object, b: object) -> None:
    from decnet.ttp.rules.stored_form import _signature

    assert _signature(a) == _signature(b)  # type: ignore[arg-type]


def test_every_shipped_rule_loads_from_its_form_as_from_its_yaml() -> None:
    paths = sorted(PACK.glob("*.yaml"))
    assert len(paths) > 50
    for path in paths:
        text = path.read_text(encoding="utf-8")
        full = compile_rule(text, source=path.name, expected_rule_id=path.stem)
        rule = loaded(text, path.stem)
        same(rule, full)
        assert rule.source_yaml == "" and rule.yaml_sha256 == full.yaml_sha256  # type: ignore[attr-defined]


def test_dates_fallbacks_and_warnings_survive_the_form() -> None:
    full = compile_rule(RULE, source="F0001.yaml", expected_rule_id="F0001")
    rule = loaded(RULE, "F0001")
    same(rule, full)
    assert any("next_review" in w for w in rule.warnings)  # type: ignore[attr-defined]
    assert any("bounded fallback" in w for w in rule.warnings)  # type: ignore[attr-defined]
    body = orjson.loads(derive_form(RULE, source="F0001.yaml", rule_id="F0001") or "")
    assert "tests" not in body["doc"] and body["compiler"] == compiler_id()


def test_a_form_of_another_text_is_refused() -> None:
    form = derive_form(RULE, source="F0001.yaml", rule_id="F0001")
    assert form is not None
    with pytest.raises(StoredFormError, match="another text"):
        compile_form(form, RULE.replace("0.6", "0.7"), source="F0001.yaml",
                     expected_rule_id="F0001")


@pytest.mark.parametrize("tamper", [
    lambda body: "not json",
    lambda body: orjson.dumps({**body, "compiler": "0" * 32}).decode(),
    lambda body: orjson.dumps({**body, "form": 99}).decode(),
    lambda body: orjson.dumps({**body, "doc": []}).decode(),
    lambda body: orjson.dumps({**body, "doc": {**body["doc"], "emits": []}}).decode(),
    lambda body: orjson.dumps({**body, "patterns": [["x"]]}).decode(),
    lambda body: orjson.dumps({**body, "patterns": [[p[0], "no", *p[2:]]
                                                    for p in body["patterns"]]}).decode(),
    # a pattern RE2 cannot decide must carry its PCRE2 form
    lambda body: orjson.dumps({**body, "patterns": [[*p[:8], None]
                                                    for p in body["patterns"]]}).decode(),
    lambda body: orjson.dumps({**body, "patterns": [[*p[:8], "(?<"]
                                                    for p in body["patterns"]]}).decode(),
], ids=["not-json", "other-compiler", "other-version", "doc-not-a-mapping",
        "invalid-rule", "short-pattern-entry", "flag-not-bool", "fallback-without-pcre2",
        "pcre2-refuses"])
def test_a_tampered_form_is_refused(tamper: object) -> None:
    form = derive_form(RULE, source="F0001.yaml", rule_id="F0001")
    assert form is not None
    changed = tamper(orjson.loads(form))  # type: ignore[operator]
    with pytest.raises(StoredFormError):
        compile_form(changed, RULE, source="F0001.yaml", expected_rule_id="F0001")


def test_text_that_does_not_compile_has_no_form() -> None:
    assert derive_form("rule_id: F0001\n", source="F0001.yaml", rule_id="F0001") is None
    assert derive_form(RULE, source="F0002.yaml", rule_id="F0002") is None  # id mismatch


def test_a_value_json_cannot_carry_exactly_leaves_no_form() -> None:
    # a date inside a lifter's options would come back as text
    text = RULE.replace("match:\n  any:", "match:\n  kind: lifter:unknown_one\n  since: "
                        "2026-01-01\n  any:")
    assert compile_rule(text, source="F0001.yaml", expected_rule_id="F0001")
    assert derive_form(text, source="F0001.yaml", rule_id="F0001") is None


def test_the_digest_is_of_the_exact_text() -> None:
    rule = loaded(RULE, "F0001")
    assert rule.yaml_sha256 == hashlib.sha256(RULE.encode()).hexdigest()  # type: ignore[attr-defined]


def test_a_form_larger_than_the_bound_is_not_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    patterns = "\n".join(f"    - pattern: '\\S+\\s+opt{n}=\\S*'" for n in range(1500))
    text = RULE.split("match:")[0] + f"match:\n  any:\n{patterns}\n" + \
        "emits:" + RULE.split("emits:")[1]
    assert compile_rule(text, source="F0001.yaml", expected_rule_id="F0001")
    assert derive_form(text, source="F0001.yaml", rule_id="F0001") is None
    monkeypatch.setattr(stored_form, "MAX_STORED_FORM_BYTES", 10 << 20)
    assert derive_form(text, source="F0001.yaml", rule_id="F0001") is not None
