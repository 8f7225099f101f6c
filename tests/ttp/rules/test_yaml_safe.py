"""Hostile and malformed YAML gets a clear error, in bounded time and memory."""

from __future__ import annotations

import pytest

from decnet.ttp.constants import MAX_RULE_FILE_BYTES
from decnet.ttp.rules.yaml_safe import YamlProblem, parse_rule_yaml


def problem(raw: bytes | str) -> YamlProblem:
    with pytest.raises(YamlProblem) as caught:
        parse_rule_yaml(raw)
    return caught.value


def test_a_mapping_parses_with_positions() -> None:
    doc = parse_rule_yaml("a: 1\nb:\n  c: [x, y]\n")
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"]}}
    assert doc.position(["b", "c", 1]) == (3, 10)
    assert doc.position(["missing"]) == (1, 1)


def test_duplicate_keys_are_an_error_not_an_overwrite() -> None:
    err = problem("rule_id: R1\nname: a\nname: b\n")
    assert "duplicate key 'name'" in err.reason
    assert "line 2" in err.reason
    assert err.line == 3


def test_nested_duplicate_keys_are_found() -> None:
    err = problem("match:\n  pattern: a\n  pattern: b\n")
    assert "duplicate key 'pattern'" in err.reason and err.line == 3


def test_alias_bomb_is_refused() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    err = problem("\n".join(lines) + "\n")
    assert "alias bomb" in err.reason


def test_a_huge_file_is_refused_before_parsing() -> None:
    raw = b"a: " + b"x" * (50 * 1024 * 1024) + b"\n"
    err = problem(raw)
    assert str(MAX_RULE_FILE_BYTES) in err.reason


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_documents_are_refused(text: str) -> None:
    assert "not a mapping" in problem(text).reason


def test_empty_document_is_refused() -> None:
    assert "empty document" in problem("").reason


def test_non_utf8_bytes_are_refused_with_offset() -> None:
    err = problem(b"name: caf\xe9\n")
    assert "not UTF-8" in err.reason and "offset 9" in err.reason


def test_several_documents_are_refused() -> None:
    err = problem("a: 1\n---\nb: 2\n")
    assert "single document" in err.reason and err.line == 2


def test_syntax_errors_carry_line_and_column() -> None:
    err = problem("a: [1, 2\nb: 3\n")
    assert err.reason.startswith("invalid YAML")
    assert err.line is not None and err.column is not None


def test_deep_nesting_is_refused() -> None:
    err = problem("a: " + "[" * 200 + "]" * 200 + "\n")
    assert "deeper" in err.reason or "nested" in err.reason


def test_python_tags_are_not_constructed() -> None:
    err = problem("a: !!python/object/apply:os.system ['true']\n")
    assert "unsupported YAML tag" in err.reason


def test_byte_order_mark_is_accepted() -> None:
    assert parse_rule_yaml("\ufeffa: 1\n".encode()).data == {"a": 1}


def test_non_scalar_keys_are_refused() -> None:
    assert "not a scalar" in problem("? [a, b]\n: 1\n").reason


@pytest.mark.parametrize("text", ["a: !!python/name:os.system\n", "a: !!set {x: null}\n",
                                  "a: !custom [1]\n", "a: !!binary aGk=\n",
                                  "<<: {a: 1}\nb: 2\n"])
def test_only_plain_data_tags_are_accepted(text: str) -> None:
    reason = problem(text).reason
    assert "unsupported YAML tag" in reason or "merge keys" in reason
