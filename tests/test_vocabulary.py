"""The shared vocabulary: change kinds as the strings the change log stores."""

from __future__ import annotations

import pytest

from decnet.ttp.store.base import DEFINITION, RuleChange
from decnet.vocabulary import ChangeKind, InvalidRuleId, validate_rule_id


def test_change_kinds_are_their_stored_strings() -> None:
    assert [kind.value for kind in ChangeKind] == ["definition", "state", "deleted", "resync",
                                                  "scoped_state"]
    assert ChangeKind("definition") is DEFINITION == "definition"
    assert RuleChange(ChangeKind.DELETED, "R1").is_deletion


@pytest.mark.parametrize("rule_id", ["", "R1.*", "R1 >", "x" * 65, "R\n1"])
def test_rule_ids_that_could_inject_are_refused(rule_id: str) -> None:
    with pytest.raises(InvalidRuleId):
        validate_rule_id(rule_id)
