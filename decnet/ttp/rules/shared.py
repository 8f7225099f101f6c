"""One copy of each equal immutable value that many rules hold (kinds, emits, dates).

10,000 rules mostly repeat a few `applies_to` sets, emit tuples, evidence field lists
and review dates; sharing them saves about a third of a loaded rule's memory. The
table is bounded: past `SHARED_VALUES_MAX` distinct values, new ones are kept as given.
"""

from __future__ import annotations

from typing import Any, TypeVar

from decnet.ttp.constants import SHARED_VALUES_MAX

T = TypeVar("T")

_table: dict[tuple[type, Any], Any] = {}


def shared(value: T) -> T:
    """An equal value of the same type seen before, else `value` (now remembered).

    Keyed by type too: `1 == 1.0 == True` and `date == datetime` must not merge.
    `value` must be hashable and immutable all the way down.
    """
    key = (type(value), value)
    found = _table.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    if len(_table) < SHARED_VALUES_MAX:
        _table[key] = value
    return value
