"""Helpers of the store tests: a rule to store, stores opened and seeded, a master's
rules directory. Test modules import these; they never import each other."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import RuleStore, RuleWriter
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from decnet.ttp.store.sql.rows import StoredContent
from tests.waiting import poll

RULE = """\
rule_id: {rule_id}
rule_version: {version}
name: uname_all
description: kernel and architecture discovery, "uname -a"
applies_to: [command]
match:
  pattern: '\\buname\\s+-a\\b'
emits:
  - {{tactic: TA0007, technique_id: T1082, confidence: 0.6}}
  - {{tactic: TA0004, technique_id: T1548, sub_technique_id: T1548.001, confidence: 0.9}}
evidence_fields: [command_text]
last_reviewed: "2026-11-01"
next_review: "2099-05-01"
author: conformance
references: [https://attack.mitre.org/techniques/T1082/]
"""


def rule_yaml(rule_id: str = "R0001", version: int = 1) -> str:
    return RULE.format(rule_id=rule_id, version=version)


async def seed_rule(store: RuleStore, rule_id: str, yaml_text: str) -> None:
    """Make `rule_id` exist in `store` the way its backend receives definitions."""
    if isinstance(store, FilesystemRuleStore):
        path = Path(store.directory) / f"{rule_id}.yaml"
        tmp = path.with_name(f".{rule_id}.yaml.tmp")
        tmp.write_text(yaml_text, encoding="utf-8")
        tmp.rename(path)
    else:
        rule = compile_rule(yaml_text, source=f"{rule_id}.yaml", expected_rule_id=rule_id)
        assert isinstance(store, RuleWriter)
        await store.upsert_rule(rule, source_path=f"{rule_id}.yaml", updated_by="conformance")

    async def arrived() -> bool:
        digest = hashlib.sha256(yaml_text.encode()).hexdigest()
        return any(r.rule_id == rule_id and r.yaml_sha256 == digest
                   for r in await store.load_compiled())

    await poll(arrived, message=f"{rule_id} to load")


async def remove_rule(store: RuleStore, rule_id: str) -> None:
    """Make `rule_id` disappear from `store` the way its backend loses definitions."""
    if isinstance(store, FilesystemRuleStore):
        (Path(store.directory) / f"{rule_id}.yaml").unlink()
    else:
        assert isinstance(store, RuleWriter)
        await store.delete_rule(rule_id)

    async def gone() -> bool:
        return all(r.rule_id != rule_id for r in await store.load_compiled())

    await poll(gone, message=f"{rule_id} to go")


@contextlib.asynccontextmanager
async def open_store(url: str | None = None) -> AsyncIterator[DatabaseRuleStore]:
    store = DatabaseRuleStore(url)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


async def seed(store: DatabaseRuleStore, rule_id: str = "R0001", version: int = 1) -> None:
    rule = compile_rule(rule_yaml(rule_id, version), source=f"{rule_id}.yaml",
                        expected_rule_id=rule_id)
    await store.upsert_rule(rule, source_path=f"{rule_id}.yaml", updated_by="test")


@contextlib.asynccontextmanager
async def tailing(url: str, poll_interval: float = 0.05) -> AsyncIterator[DatabaseRuleStore]:
    store = DatabaseRuleStore(url)
    await store.start()
    store.start_tail(poll_interval)
    try:
        yield store
    finally:
        await store.stop()


def write(directory: Path, rule_id: str, text: str) -> None:
    tmp = directory / f".{rule_id}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(directory / f"{rule_id}.yaml")


@contextlib.asynccontextmanager
async def rules_dir() -> AsyncIterator[FilesystemRuleStore]:
    with tempfile.TemporaryDirectory(prefix="decnet-ttp-master-") as directory:
        fs_store = FilesystemRuleStore(directory)
        try:
            yield fs_store
        finally:
            await fs_store.stop()


@contextlib.asynccontextmanager
async def running(task_coro: object) -> AsyncIterator[asyncio.Task[None]]:
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(task_coro)  # type: ignore
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stored(store: DatabaseRuleStore) -> dict[str, StoredContent]:
    return await store.repo.rule_contents()


async def has_version(db: DatabaseRuleStore, rule_id: str, version: int) -> bool:
    row = (await stored(db)).get(rule_id)
    return row is not None and row.rule_version == version


async def gone(db: DatabaseRuleStore, rule_id: str) -> bool:
    return rule_id not in await stored(db)
