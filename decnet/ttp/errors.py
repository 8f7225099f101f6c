"""Error types a caller can catch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from decnet.ttp.printable import printable
from decnet.vocabulary import (
    DecnetTTPError,
    InvalidRuleId,
    InvalidScopeError,
    InvalidStateError,
)

__all__ = ["ConfigError", "DatabaseFileChanged", "DatabaseMissing", "DatabaseReplaced",
           "DecnetTTPError", "InvalidRuleId", "InvalidScopeError", "InvalidStateError",
           "MasterLeaseLost", "RuleError", "RuleProblem", "RuleSetError", "SchemaOutdatedError",
           "StoreError", "UnsupportedPlatformError"]


class EventError(DecnetTTPError, ValueError):
    """An event that is not shaped like one (no source_kind, payload not a mapping...)."""


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One finding about one rule file: where, which field, why."""

    file: str
    reason: str
    field: str | None = None
    line: int | None = None
    column: int | None = None
    rule_id: str | None = None

    def __str__(self) -> str:
        where = printable(self.file)  # a file name may hold a newline or an escape
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.reason}"


class RuleError(DecnetTTPError):
    """A rule that cannot be loaded: carries file, line, column, field and reason."""

    def __init__(self, problem: RuleProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem

    @property
    def file(self) -> str:
        return self.problem.file

    @property
    def line(self) -> int | None:
        return self.problem.line

    @property
    def column(self) -> int | None:
        return self.problem.column

    @property
    def field(self) -> str | None:
        return self.problem.field

    @property
    def reason(self) -> str:
        return self.problem.reason


class RuleSetError(DecnetTTPError):
    """Every error of a rule set at once, so a deploy shows them all."""

    def __init__(self, errors: Iterable[RuleError]) -> None:
        self.errors = tuple(errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} rule error(s):\n{lines}")

    def __iter__(self) -> Iterator[RuleError]:
        return iter(self.errors)


class StoreError(DecnetTTPError):
    """A store backend failed; the operation did not take effect."""


class UnsupportedPlatformError(DecnetTTPError):
    """The store cannot run on this operating system."""


class SchemaOutdatedError(StoreError):
    """The database schema is older than this version needs."""


class MasterLeaseLost(StoreError):
    """This process no longer holds the master lease; its definition write was refused."""


class DatabaseFileChanged(StoreError):
    """The SQLite file this process opened is gone or was replaced: it is used no more."""


class DatabaseMissing(DatabaseFileChanged):
    """The SQLite file of the rule database is gone (deleted or moved away)."""


class DatabaseReplaced(DatabaseFileChanged):
    """Another file now has the SQLite database's name (a restore by rename, a new
    `db upgrade` after a delete): the process that opened the old one must restart."""


class ConfigError(DecnetTTPError):
    """Bad configuration (an unknown store type, a missing URL)."""


class ListenError(ConfigError):
    """A server cannot listen where it was told (address in use, unknown host, no permission)."""


class TagJobError(DecnetTTPError):
    """The tag job could not finish (a worker process died); tags written so far stand."""
