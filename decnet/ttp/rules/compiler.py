"""YAML text -> `CompiledRule`: the one compile step every store uses."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import ValidationError

from decnet.ttp.constants import DEFAULT_MATCH_FIELDS
from decnet.ttp.errors import RuleError, RuleProblem, RuleSetError
from decnet.ttp.rules.compiled import CompiledRule, Emit, FrozenDict, ReviewInfo, deep_freeze
from decnet.ttp.rules.correlation import CorrelationSpec
from decnet.ttp.rules.lifters import plan_lifter
from decnet.ttp.rules.matchers import (
    Matcher,
    MatchSpecError,
    NoFieldError,
    PatternCache,
    PatternLeaf,
    compile_match,
    lifter_name,
)
from decnet.ttp.rules.regex import CompiledPattern
from decnet.ttp.rules.schema import CorrelationSchema, RuleSchema
from decnet.ttp.rules.shared import shared
from decnet.ttp.rules.yaml_safe import YamlProblem, parse_rule_yaml
from decnet.vocabulary import DEFAULT_STATE, RuleState

log = logging.getLogger(__name__)


class RuleDocument(Protocol):
    """A parsed rule document: its plain data, and where a path of it was written."""

    @property
    def data(self) -> dict[str, Any]: ...

    def position(self, path: Sequence[str | int]) -> tuple[int | None, int | None]: ...


def compile_rule(
    raw: bytes | str,
    *,
    source: str,
    expected_rule_id: str | None = None,
    state: RuleState = DEFAULT_STATE,
    today: datetime | None = None,
    keep_source: bool = True,
) -> CompiledRule:
    """Parse, validate and compile one rule document.

    `source` names the file (or database row) in errors. When `expected_rule_id` is
    given (the file stem), the rule's own id must equal it. Without `keep_source` the
    rule carries the text's SHA-256 instead of the text (a store that holds the text
    fetches it when asked). Raises `RuleSetError` holding every problem found in this
    document.
    """
    try:
        doc = parse_rule_yaml(raw)
    except YamlProblem as exc:
        raise _one(RuleProblem(source, exc.reason, None, exc.line, exc.column)) from None
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if text.startswith("\ufeff"):
        text = text[1:]
    if keep_source:
        return build_rule(doc, source=source, expected_rule_id=expected_rule_id,
                          state=state, today=today, source_yaml=text)
    return build_rule(doc, source=source, expected_rule_id=expected_rule_id, state=state,
                      today=today, source_digest=hashlib.sha256(text.encode()).digest())


def build_rule(
    doc: RuleDocument,
    *,
    source: str,
    expected_rule_id: str | None = None,
    state: RuleState = DEFAULT_STATE,
    today: datetime | None = None,
    source_yaml: str = "",
    source_digest: bytes | None = None,
    patterns: PatternCache | None = None,
) -> CompiledRule:
    """Validate and compile a parsed document (see `compile_rule`).

    `patterns` holds patterns compiled before, by `(pattern, case_insensitive)`: a
    pattern found there is not compiled again (the database's stored form).
    """
    try:
        schema = RuleSchema.model_validate(doc.data)
    except ValidationError as exc:
        raise RuleSetError(_schema_errors(exc, doc, source) + _match_missing(doc, source)
                           ) from None
    problems: list[RuleProblem] = [e.problem for e in _match_missing(doc, source)]
    if expected_rule_id is not None and schema.rule_id != expected_rule_id:
        problems.append(RuleProblem(
            source, f"rule_id {schema.rule_id!r} does not equal the file stem "
            f"{expected_rule_id!r}", "rule_id", *doc.position(["rule_id"]),
            rule_id=schema.rule_id,
        ))
    lifter = lifter_name(schema.match)
    matchers: dict[str, Matcher] = {}
    correlation: CorrelationSpec | None = None
    warnings: list[str] = []

    def problem(reason: str, path: Sequence[str | int]) -> None:
        field = ".".join(str(p) for p in path)
        problems.append(RuleProblem(source, reason, field, *doc.position(list(path)),
                                    rule_id=schema.rule_id))

    def compile_kinds(spec: Mapping[str, Any], kinds: Iterable[str],
                      ) -> dict[str, Matcher] | None:
        compiled: dict[str, Matcher] = {}
        cache: PatternCache = dict(patterns) if patterns else {}
        for kind in sorted(kinds):
            try:
                built = compile_match(spec, DEFAULT_MATCH_FIELDS.get(kind), cache=cache)
            except NoFieldError as exc:
                problem(f"{exc.reason}: source kind {kind!r} has no default field; "
                        "name one with match.field", ("match", *exc.path))
                return None
            except MatchSpecError as exc:
                problem(exc.reason, ("match", *exc.path))
                return None
            compiled[kind] = built.matcher
            for warning in built.warnings:
                named = f"rule {schema.rule_id}: {warning}"
                if named not in warnings:
                    warnings.append(named)
                    log.warning("%s: %s", source, named)
        return compiled

    if schema.correlation is not None:
        if lifter is not None:
            problem("a correlation rule cannot also be a lifter", ("match", "kind"))
        else:
            correlation = _correlation(schema.correlation, schema.match,
                                       frozenset(schema.applies_to), compile_kinds)
    elif lifter:
        try:
            plan = plan_lifter(lifter, schema.match, schema.applies_to,
                               schema.evidence_fields)
        except MatchSpecError as exc:
            problem(exc.reason, ("match", *exc.path))
        else:
            kinds = plan.kinds or frozenset(schema.applies_to)
            if plan.warning is not None:
                warnings.append(plan.warning)
            elif plan.correlation is not None:
                correlation = _correlation(plan.correlation, plan.match or {}, kinds,
                                           compile_kinds)
            elif plan.match is not None:
                matchers = compile_kinds(plan.match, kinds) or {}
    elif lifter == "":
        problems.append(RuleProblem(source, "lifter kind needs a name (lifter:<name>)",
                                    "match.kind", *doc.position(["match", "kind"])))
    else:
        matchers = compile_kinds(schema.match, schema.applies_to) or {}
    if problems:
        raise RuleSetError(RuleError(p) for p in problems)
    now = (today or datetime.now(UTC)).date()
    if schema.next_review is not None and schema.next_review < now:
        warnings.append(f"next_review {schema.next_review.isoformat()} is in the past")
    return CompiledRule(
        rule_id=schema.rule_id,
        rule_version=schema.rule_version,
        name=schema.name,
        applies_to=shared(frozenset(sys.intern(k) for k in schema.applies_to)),
        match_spec=deep_freeze(schema.match),
        emits=shared(tuple(
            shared(Emit(sys.intern(e.technique_id),
                        sys.intern(e.sub_technique_id) if e.sub_technique_id else None,
                        sys.intern(e.tactic), float(e.confidence)))
            for e in schema.emits
        )),
        evidence_fields=shared(tuple(sys.intern(f) for f in schema.evidence_fields)),
        state=state,
        description=schema.description,
        review=shared(ReviewInfo(_date(schema.last_reviewed), _date(schema.next_review),
                                 schema.author, tuple(schema.references))),
        lifter=lifter,
        correlation=correlation,
        source_path=source,
        source_yaml=source_yaml,
        matchers=FrozenDict(matchers),
        warnings=tuple(warnings),
        source_digest=source_digest,
    )


def _date(value: date | None) -> date | None:
    return None if value is None else shared(value)


def rule_patterns(rule: CompiledRule) -> list[CompiledPattern]:
    """Every distinct pattern of `rule`'s matchers and correlation filters, in order."""
    found: dict[tuple[str, bool], CompiledPattern] = {}
    trees = list(rule.matchers.values())
    if rule.correlation is not None:
        trees.extend(m for m in rule.correlation.filters.values() if m is not None)
    for tree in trees:
        for leaf in tree.leaves():
            if isinstance(leaf, PatternLeaf):
                found.setdefault((leaf.pattern.source, leaf.pattern.ignore_case),
                                 leaf.pattern)
    return list(found.values())


def _correlation(
    body: CorrelationSchema, match: Mapping[str, Any], kinds: frozenset[str],
    compile_kinds: Callable[[Mapping[str, Any], Iterable[str]], dict[str, Matcher] | None],
) -> CorrelationSpec | None:
    """The compiled correlation; its filter is the rule's `match` (empty: every event)."""
    filters: dict[str, Matcher | None]
    if match:
        compiled = compile_kinds(match, kinds)
        if compiled is None:
            return None
        filters = dict(compiled)
    else:
        filters = dict.fromkeys(kinds)
    after = body.after
    return CorrelationSpec(
        type=body.type,
        group_by=tuple(body.group_by),
        timespan=body.timespan,
        threshold=body.condition.threshold,
        value_field=body.condition.field,
        kinds=kinds,
        after_rules=tuple(after.rules) if after else (),
        after_techniques=tuple(after.techniques) if after else (),
        filters=MappingProxyType(filters),
        filter_source=repr(match),
    )


def rule_id_of_path(path: str | os.PathLike[str]) -> str:
    """The rule id a file must declare: its name without the YAML suffix."""
    # plain string work: pathlib interns every path part, which adds up over 10,000 rules
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def _one(problem: RuleProblem) -> RuleSetError:
    return RuleSetError([RuleError(problem)])


def _match_missing(doc: RuleDocument, source: str) -> list[RuleError]:
    """`match` is required, except in a correlation rule (no filter: every event counts)."""
    data = doc.data
    if "match" in data or "correlation" in data:
        return []
    rule_id = data.get("rule_id") if isinstance(data.get("rule_id"), str) else None
    line, column = doc.position(["match"])
    return [RuleError(RuleProblem(source, "required key is missing", "match", line, column,
                                  rule_id))]


def _schema_errors(exc: ValidationError, doc: RuleDocument, source: str) -> list[RuleError]:
    rule_id = doc.data.get("rule_id") if isinstance(doc.data.get("rule_id"), str) else None
    errors: list[RuleError] = []
    for err in exc.errors(include_url=False):
        loc: Sequence[Any] = err["loc"]
        field = ".".join(str(p) for p in loc) or None
        if err["type"] == "extra_forbidden":
            reason = f"unknown key {loc[-1]!r}" + (
                " (did you mean 'emits'?)" if loc[-1] == "emit" else ""
            )
        elif err["type"] == "missing":
            reason = "required key is missing"
        else:
            reason = str(err["msg"]).removeprefix("Value error, ")
        line, column = doc.position([p for p in loc if isinstance(p, str | int)])
        errors.append(RuleError(RuleProblem(source, reason, field, line, column, rule_id)))
    return errors
