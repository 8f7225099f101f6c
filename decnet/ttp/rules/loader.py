"""Load a directory of rule files, collecting every error instead of stopping at one."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from decnet.ttp.constants import MAX_RULE_FILE_BYTES, RULE_FILE_SUFFIXES
from decnet.ttp.errors import RuleError, RuleProblem, RuleSetError
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule, rule_id_of_path


def is_rule_file_name(name: str) -> bool:
    """Filename allow-list: `<stem>.yaml|.yml`, not hidden. Editor scratch files fail it."""
    return not name.startswith(".") and name.endswith(RULE_FILE_SUFFIXES)


@dataclass(slots=True)
class LoadResult:
    """Rules that compiled, and every problem found on the way."""

    rules: dict[str, CompiledRule] = field(default_factory=dict)
    errors: list[RuleError] = field(default_factory=list)
    #: rule_id -> file that provides it (only for rules that loaded)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def warnings(self) -> list[tuple[str, str]]:
        return [(r.source_path or r.rule_id, w) for r in self.rules.values() for w in r.warnings]

    def raise_for_errors(self) -> None:
        if self.errors:
            raise RuleSetError(self.errors)


def read_rule_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read at most one byte past the size limit, so a huge file costs nothing.

    Opened non-blocking and checked to be a regular file first: a FIFO or a device
    named like a rule must not hang the reader.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_RULE_FILE_BYTES + 1)
    finally:
        os.close(fd)


def load_rule_file(path: Path) -> CompiledRule:
    """Compile one rule file; raises `RuleSetError` with every problem in it."""
    try:
        raw = read_rule_bytes(path)
    except OSError as exc:
        problem = RuleProblem(str(path), f"cannot read: {exc.strerror}")
        raise RuleSetError([RuleError(problem)]) from None
    return compile_rule(raw, source=str(path), expected_rule_id=rule_id_of_path(path))


def rule_files(directory: Path) -> list[Path]:
    """Rule files of `directory` (not recursive), sorted by name."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise RuleSetError([RuleError(RuleProblem(str(directory),
                                                  "rules directory does not exist"))]) from None
    return sorted(directory / n for n in names if is_rule_file_name(n))


def load_directory(directory: str | os.PathLike[str]) -> LoadResult:
    """Compile every rule file of `directory`; rules claimed by two files are errors."""
    return load_files(rule_files(Path(directory)))


def load_files(paths: Iterable[Path]) -> LoadResult:
    result = LoadResult()
    claimed: dict[str, list[Path]] = {}
    for path in paths:
        if not os.path.lexists(path) or path.is_dir():
            continue
        claimed.setdefault(rule_id_of_path(path), []).append(path)
        try:
            rule = load_rule_file(path)
        except RuleSetError as exc:
            result.errors.extend(exc.errors)
            continue
        result.rules[rule.rule_id] = rule
        result.files[rule.rule_id] = path
    for rule_id, paths_for_id in claimed.items():
        if len(paths_for_id) > 1:
            result.rules.pop(rule_id, None)
            result.files.pop(rule_id, None)
            names = " and ".join(str(p) for p in paths_for_id)
            result.errors.append(RuleError(RuleProblem(
                str(paths_for_id[0]), f"rule {rule_id} is defined by two files: {names}",
                "rule_id", rule_id=rule_id,
            )))
    return result
