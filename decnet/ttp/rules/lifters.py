"""Named lifters (`match.kind: lifter:<name>`) of the anchor project's rule pack, mapped.

A lifter whose inputs decnet-ttp has (login attempts with username, password and
result) becomes a correlation rule or a per-event match; any other lifter is kept,
never fires, and carries a warning naming what it needs, so `rules validate`
shows it instead of leaving it silently inert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from decnet.ttp.constants import LIFTER_DEFAULT_WINDOW_MINUTES
from decnet.ttp.rules.matchers import MatchSpecError
from decnet.ttp.rules.schema import CorrelationSchema

#: A failed login as the input adapters write it (`result`) or as native events do (`success`).
FAILED_LOGIN: Final[Mapping[str, Any]] = {"any": [
    {"field": "result", "in": ["failed", "failure", "fail"]},
    {"field": "success", "equals": False},
]}
#: A successful login, both spellings.
SUCCESSFUL_LOGIN: Final[Mapping[str, Any]] = {"any": [
    {"field": "result", "in": ["success", "succeeded", "ok"]},
    {"field": "success", "equals": True},
]}
AUTH_KINDS: Final = frozenset({"auth_attempt"})


@dataclass(frozen=True, slots=True)
class LifterPlan:
    """What a lifter becomes: a correlation, a per-event match, or a warning only.

    `match` is the filter (for a correlation) or the per-event match block; it is
    compiled over `kinds` (None: the rule's own `applies_to`).
    """

    correlation: CorrelationSchema | None = None
    match: Mapping[str, Any] | None = None
    kinds: frozenset[str] | None = None
    warning: str | None = None


Mapper = Callable[[Mapping[str, Any]], LifterPlan]


def plan_lifter(name: str, spec: Mapping[str, Any], applies_to: Sequence[str],
                evidence_fields: Sequence[str]) -> LifterPlan:
    """The plan for lifter `name` with its `match` block; raises `MatchSpecError` on bad options."""
    mapper = _MAPPERS.get(name)
    if mapper is not None:
        return mapper(spec)
    needs = ", ".join(evidence_fields) if evidence_fields else "its own inputs"
    return LifterPlan(warning=(
        f"lifter:{name} is not built into decnet-ttp: it needs {'/'.join(applies_to)} "
        f"events carrying {needs} from the analyser that computes them; the rule is "
        "stored and never fires"))


def _count(spec: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MatchSpecError(f"{key} must be a positive whole number", (key,))
    return value


def _window(spec: Mapping[str, Any]) -> float:
    return 60.0 * _count(spec, "window_minutes", LIFTER_DEFAULT_WINDOW_MINUTES)


def _correlation(kind: str, group_by: list[str], seconds: float, threshold: int,
                 field: str | None = None, after: Mapping[str, Any] | None = None,
                 ) -> CorrelationSchema:
    condition: dict[str, Any] = {"gte": threshold}
    if field is not None:
        condition["field"] = field
    body: dict[str, Any] = {"type": kind, "group_by": group_by, "timespan": seconds,
                            "condition": condition}
    if after is not None:
        body["after"] = after
    return CorrelationSchema.model_validate(body)


def _auth_brute(spec: Mapping[str, Any]) -> LifterPlan:
    """Failed logins per source address: `fail_threshold` within `window_minutes`."""
    return LifterPlan(_correlation("event_count", ["src_ip"], _window(spec),
                                   _count(spec, "fail_threshold")),
                      FAILED_LOGIN, AUTH_KINDS)


def _password_guessing(spec: Mapping[str, Any]) -> LifterPlan:
    """Distinct passwords per source and account: `pw_threshold` within `window_minutes`."""
    return LifterPlan(_correlation("value_count", ["src_ip", "username"], _window(spec),
                                   _count(spec, "pw_threshold"), "password"),
                      FAILED_LOGIN, AUTH_KINDS)


def _password_spraying(spec: Mapping[str, Any]) -> LifterPlan:
    """Distinct accounts per source and password: `account_threshold` (read from logins)."""
    return LifterPlan(_correlation("value_count", ["src_ip", "password"], _window(spec),
                                   _count(spec, "account_threshold"), "username"),
                      FAILED_LOGIN, AUTH_KINDS)


def _valid_account_use(spec: Mapping[str, Any]) -> LifterPlan:
    """A successful login from a source tagged with brute force (T1110) before it."""
    prior = spec.get("require_prior_brute", True)
    if not isinstance(prior, bool):
        raise MatchSpecError("require_prior_brute must be true or false",
                             ("require_prior_brute",))
    after = {"techniques": ["T1110"]} if prior else None
    return LifterPlan(_correlation("event_count", ["src_ip"], _window(spec), 1, after=after),
                      SUCCESSFUL_LOGIN, AUTH_KINDS)


def _default_credentials(spec: Mapping[str, Any]) -> LifterPlan:
    """A login attempt with one of the listed (username, password) pairs: per event."""
    pairs = spec.get("pairs")
    if not isinstance(pairs, list | tuple) or not pairs:
        raise MatchSpecError("pairs takes a non-empty list of [username, password]", ("pairs",))
    choices: list[dict[str, Any]] = []
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, list | tuple) or len(pair) != 2
                or not all(isinstance(p, str | int) and not isinstance(p, bool) for p in pair)):
            raise MatchSpecError("each pair is [username, password]", ("pairs", i))
        choices.append({"all": [{"field": "username", "equals": str(pair[0])},
                                {"field": "password", "equals": str(pair[1])}]})
    return LifterPlan(match={"any": choices}, kinds=AUTH_KINDS)


_MAPPERS: Final[dict[str, Mapper]] = {
    "auth_brute_generic": _auth_brute,
    "password_guessing": _password_guessing,
    "password_spraying": _password_spraying,
    "credential_valid_account_use": _valid_account_use,
    "default_credentials": _default_credentials,
}
#: Lifter names that run in decnet-ttp.
MAPPED_LIFTERS: Final = frozenset(_MAPPERS)
