"""The stored form: what the database keeps beside a rule's YAML so workers load it fast.

A worker compiling 10,000 rules from YAML spends most of its time parsing YAML and
Python regexes. The master compiles each rule fully when it writes it, so the row can
also carry the result as data (never as compiled objects): the parsed document as JSON
(without its `tests`, which workers do not run) and each pattern's translations. A
worker validates the document with the same schema and builds the same matchers from
it, skipping only the YAML parser and the regex translation.

A form is used only when it was written by this very compiler (`compiler_id`: the code
of this package's rule compiler and the versions of Python and the libraries it relies
on), was derived from exactly the row's YAML (its SHA-256) and parses into the expected
shape; anything else raises `StoredFormError`, and the caller compiles the YAML
instead. `derive_form` refuses to produce a form that does not load back into exactly
the rule the YAML compiles to.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Final

import orjson
import pcre2

from decnet.ttp.constants import MAX_STORED_FORM_BYTES
from decnet.ttp.errors import RuleSetError
from decnet.ttp.rules.bounded import BoundedSearch
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import build_rule, rule_patterns
from decnet.ttp.rules.matchers import MatchNode, NotOf, PatternCache, PatternLeaf, TextLeaf
from decnet.ttp.rules.regex import CompiledPattern
from decnet.ttp.rules.yaml_safe import YamlProblem, parse_rule_yaml
from decnet.vocabulary import DEFAULT_STATE, RuleState

log = logging.getLogger(__name__)

#: Bumped when the layout below changes.
FORM_VERSION: Final = 1
#: Libraries whose behaviour the compiled result depends on.
_LIBRARIES: Final = ("PyYAML", "pydantic", "pydantic-core", "google-re2", "pcre2")
#: Top-level keys a worker does not need (and the form leaves out).
_LEFT_OUT: Final = ("tests",)
#: Dates a rule may hold: stored as ISO text, validated back into dates by the schema.
_DATE_KEYS: Final = ("last_reviewed", "next_review")


class StoredFormError(Exception):
    """A stored form this process cannot use (malformed, from another compiler,
    or not a rule); compile the YAML instead."""


@functools.cache
def compiler_id() -> str:
    """Fingerprint of the compiler: this package's rule code, constants, Python and
    library versions. A form from any other compiler is not used."""
    digest = hashlib.sha256(f"form {FORM_VERSION} python {sys.version_info[:3]}".encode())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name} {importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name} -".encode())
    package = files("decnet.ttp")
    sources = [package / "constants.py", package / "errors.py"]
    rules = package / "rules"
    sources += sorted((p for p in rules.iterdir() if p.name.endswith(".py")),
                      key=lambda p: p.name)
    sources.append(files("decnet") / "vocabulary.py")
    for source in sources:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:32]


class _Unplaced:
    """A document from a stored form: its data, and no positions (a form is never
    reported to a user; a form that does not compile is not used)."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def position(self, path: Sequence[str | int]) -> tuple[int | None, int | None]:
        return None, None


def derive_form(text: str, *, source: str, rule_id: str,
                today: datetime | None = None) -> str | None:
    """The stored form of the rule `text` defines, or None when it has none.

    None for a text that does not compile, holds values JSON cannot carry exactly, whose
    form is larger than `MAX_STORED_FORM_BYTES`, or whose form would not load back into
    the same rule (checked here, once per write).
    """
    today = today or datetime.now(UTC)  # one day for both compiles (review warnings)
    try:
        doc = parse_rule_yaml(text)
        rule = build_rule(doc, source=source, expected_rule_id=rule_id, today=today,
                          source_yaml=text)
    except (YamlProblem, RuleSetError):
        return None
    data = {key: value for key, value in doc.data.items() if key not in _LEFT_OUT}
    for key, value in (("last_reviewed", rule.review.last_reviewed),
                       ("next_review", rule.review.next_review)):
        if value is not None:
            data[key] = value.isoformat()
    patterns = rule_patterns(rule)
    body = {
        "form": FORM_VERSION, "compiler": compiler_id(),
        "yaml_sha256": rule.yaml_sha256, "doc": data,
        "patterns": [[p.source, p.ignore_case, p.re2_source, p.newline_sensitive,
                      p.non_boundary, p.matches_empty, p.warning, p.reason, p.pcre2_source]
                     for p in patterns],
    }
    try:
        form = orjson.dumps(body).decode()
        if len(form) > MAX_STORED_FORM_BYTES:
            return None
        if orjson.loads(form) != body:
            return None  # a value JSON reads back differently (a date elsewhere, NaN)
        again = compile_form(form, text, source=source, expected_rule_id=rule_id,
                             today=today)
    except (TypeError, orjson.JSONEncodeError, StoredFormError):
        return None
    if _signature(again) != _signature(rule):
        log.warning("%s: the stored form would load differently; workers compile the "
                    "YAML of this rule", source)
        return None
    return form


def compile_form(form: str, text: str, *, source: str, expected_rule_id: str,
                 state: RuleState = DEFAULT_STATE,
                 today: datetime | None = None) -> CompiledRule:
    """The rule the stored form `form` of the YAML `text` holds (without the text;
    with its SHA-256).

    Raises `StoredFormError` when the form is not usable (see the module doc), or was
    not derived from exactly `text` (a row whose YAML was changed by hand).
    """
    try:
        body = orjson.loads(form)
    except orjson.JSONDecodeError:
        raise StoredFormError("not JSON") from None
    if not isinstance(body, dict) or body.get("form") != FORM_VERSION:
        raise StoredFormError("not a stored form of this version")
    if body.get("compiler") != compiler_id():
        raise StoredFormError("written by another compiler")
    data, digest, entries = body.get("doc"), body.get("yaml_sha256"), body.get("patterns")
    if not isinstance(data, dict) or not isinstance(entries, list) or \
            not isinstance(digest, str) or len(digest) != 64:
        raise StoredFormError("malformed")
    source_digest = hashlib.sha256(text.encode("utf-8")).digest()
    if source_digest.hex() != digest:
        raise StoredFormError("derived from another text than the row's YAML")
    if data.get("rule_id") == expected_rule_id:
        data["rule_id"] = expected_rule_id  # one copy of the id: the caller's
    patterns = _patterns(entries)
    _share_pattern_texts(data.get("match"), patterns)
    try:
        return build_rule(_Unplaced(data), source=source, expected_rule_id=expected_rule_id,
                          state=state, today=today, source_digest=source_digest,
                          patterns=patterns)
    except RuleSetError as exc:
        raise StoredFormError(f"does not compile: {exc}") from None


def _patterns(entries: list[Any]) -> PatternCache:
    found: PatternCache = {}
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 9:
            raise StoredFormError("malformed pattern")
        (source, folded, re2_source, newline, non_boundary, empty, warning, reason,
         pcre2_source) = entry
        if not (isinstance(source, str) and source and _flags(folded, newline, non_boundary,
                                                               empty)
                and _texts(re2_source, warning, reason, pcre2_source)):
            raise StoredFormError("malformed pattern")
        if (re2_source is None or newline or non_boundary) and pcre2_source is None:
            raise StoredFormError("a pattern RE2 cannot decide lacks its PCRE2 form")
        try:
            bounded = None if pcre2_source is None else BoundedSearch(pcre2_source)
        except pcre2.LibraryError as exc:
            raise StoredFormError(f"PCRE2 refuses a stored pattern: {exc}") from None
        found[(source, folded)] = CompiledPattern(
            source=source, ignore_case=folded, re2_source=re2_source,
            newline_sensitive=newline, non_boundary=non_boundary, matches_empty=empty,
            warning=warning,
            reason=reason, pcre2_source=pcre2_source, _bounded=bounded)
    return found


def _share_pattern_texts(node: Any, patterns: PatternCache) -> None:
    """Point the document's `pattern` strings at the compiled patterns' equal ones, so a
    loaded rule holds each pattern text once."""
    if isinstance(node, dict):
        text = node.get("pattern")
        if isinstance(text, str):
            for folded in (False, True):
                known = patterns.get((text, folded))
                if known is not None:
                    node["pattern"] = known.source
                    break
        for value in node.values():
            if isinstance(value, dict | list):
                _share_pattern_texts(value, patterns)
    elif isinstance(node, list):
        for item in node:
            _share_pattern_texts(item, patterns)


def _flags(*values: Any) -> bool:
    return all(isinstance(v, bool) for v in values)


def _texts(*values: Any) -> bool:
    return all(v is None or isinstance(v, str) for v in values)


def _signature(rule: CompiledRule) -> tuple[Any, ...]:
    """Everything a worker's engine reads from a rule, for `derive_form`'s check."""
    correlation = rule.correlation
    filters = {} if correlation is None else {
        kind: None if tree is None else _tree(tree)
        for kind, tree in correlation.filters.items()}
    return (rule, rule.warnings, rule.yaml_sha256,
            {kind: _tree(tree) for kind, tree in rule.matchers.items()},
            filters, None if correlation is None else correlation.filter_source)


def _tree(node: MatchNode) -> Any:
    if isinstance(node, PatternLeaf):
        p = node.pattern
        return ("pattern", node.field, p.source, p.ignore_case, p.re2_source,
                p.newline_sensitive, p.non_boundary, p.matches_empty, p.engine, p.warning,
                p.reason, p.pcre2_source)
    if isinstance(node, TextLeaf):
        return ("text", node.field, node.op, node.needles, node.folded)
    if isinstance(node, NotOf):
        return ("not", _tree(node.child))
    children = getattr(node, "children", ())
    return (type(node).__name__, tuple(_tree(child) for child in children))
