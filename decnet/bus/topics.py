"""Topic names; rule ids are validated so they can never carry wildcards or separators."""

from __future__ import annotations

from typing import Final

from decnet.vocabulary import validate_rule_id

RULE_TOPICS: Final = "ttp.rule.>"


def ttp_rule_state(rule_id: str) -> str:
    """Topic announcing a state change (set, cleared or expired) of `rule_id`."""
    return f"ttp.rule.state.{validate_rule_id(rule_id)}"


def ttp_rule_reloaded(rule_id: str) -> str:
    """Topic announcing a new definition, or the deletion, of `rule_id`."""
    return f"ttp.rule.reloaded.{validate_rule_id(rule_id)}"
