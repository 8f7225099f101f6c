"""Error types a caller can catch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class DecnetTTPError(Exception):
    """Base of every error this package raises on purpose."""


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
        where = self.file
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


class InvalidRuleId(DecnetTTPError, ValueError):
    """A rule id outside `[A-Za-z0-9_]{1,64}` (it could inject bus wildcards or paths)."""


class InvalidStateError(DecnetTTPError, ValueError):
    """A `RuleState` whose fields contradict each other."""


class StoreError(DecnetTTPError):
    """A store backend failed; the operation did not take effect."""


class UnsupportedPlatformError(DecnetTTPError):
    """The store cannot run on this operating system."""


class SchemaOutdatedError(StoreError):
    """The database schema is older than this version needs."""


class MasterLeaseLost(StoreError):
    """This process no longer holds the master lease; its definition write was refused."""


class ConfigError(DecnetTTPError):
    """Bad configuration (an unknown store type, a missing URL)."""


class TagJobError(DecnetTTPError):
    """The tag job could not finish (a worker process died); tags written so far stand."""
