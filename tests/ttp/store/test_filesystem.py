"""What only the filesystem store has: inotify hot reload, editors, bad files, overflow."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from decnet.ttp.errors import UnsupportedPlatformError
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import DEFINITION, DELETED, RuleChange, RuleState, StateName
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore, ensure_linux
from tests.waiting import next_change, no_change, poll

RULE = """\
rule_id: {rule_id}
rule_version: {version}
name: uname_{rule_id}
applies_to: [command]
match: {{pattern: '\\buname\\s+-a\\b'}}
emits: [{{tactic: TA0007, technique_id: T1082, confidence: 0.5}}]
"""


def rule_text(rule_id: str = "R0007", version: int = 1) -> str:
    return RULE.format(rule_id=rule_id, version=version)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FilesystemRuleStore]:
    (tmp_path / "R0001.yaml").write_text(rule_text("R0001"))
    async with FilesystemRuleStore(tmp_path) as started:
        assert isinstance(started, FilesystemRuleStore)
        yield started


def version_of(change: RuleChange) -> int:
    assert change.change_kind == DEFINITION
    assert isinstance(change.new_value, CompiledRule)
    return change.new_value.rule_version


async def test_in_place_write_is_one_change(store: FilesystemRuleStore) -> None:
    changes = store.subscribe_changes()
    (store.directory / "R0001.yaml").write_text(rule_text("R0001", 2))
    assert version_of(await next_change(changes)) == 2
    await no_change(changes)


async def test_rename_into_place_is_one_change(store: FilesystemRuleStore) -> None:
    changes = store.subscribe_changes()
    scratch = store.directory / ".R0001.yaml.tmp"
    scratch.write_text(rule_text("R0001", 3))
    os.replace(scratch, store.directory / "R0001.yaml")
    assert version_of(await next_change(changes)) == 3
    await no_change(changes)


async def test_new_file_is_a_definition(store: FilesystemRuleStore) -> None:
    changes = store.subscribe_changes()
    (store.directory / "R0002.yaml").write_text(rule_text("R0002"))
    change = await next_change(changes)
    assert (change.change_kind, change.rule_id) == (DEFINITION, "R0002")
    assert store.reloads_applied == 2


async def test_same_bytes_written_twice_collapse(store: FilesystemRuleStore) -> None:
    changes = store.subscribe_changes()
    path = store.directory / "R0001.yaml"
    path.write_text(rule_text("R0001", 2))
    assert version_of(await next_change(changes)) == 2
    path.write_text(rule_text("R0001", 2))
    os.utime(path)
    await no_change(changes)


async def test_delete_is_announced(store: FilesystemRuleStore) -> None:
    changes = store.subscribe_changes()
    (store.directory / "R0001.yaml").unlink()
    change = await next_change(changes)
    assert change.change_kind == DELETED and change.rule_id == "R0001"
    assert await store.load_compiled() == []


async def test_renaming_a_file_out_is_a_deletion(store: FilesystemRuleStore) -> None:
    changes = store.subscribe_changes()
    os.rename(store.directory / "R0001.yaml", store.directory / "R0001.yaml.off")
    change = await next_change(changes)
    assert change.change_kind == DELETED and change.rule_id == "R0001"
    os.rename(store.directory / "R0001.yaml.off", store.directory / "R0001.yaml")
    change = await next_change(changes)
    assert change.change_kind == DEFINITION and change.rule_id == "R0001"


async def test_unlink_then_write_back_is_not_a_deletion(store: FilesystemRuleStore) -> None:
    """How some editors save: move the original away, write a new file."""
    changes = store.subscribe_changes()
    os.rename(store.directory / "R0001.yaml", store.directory / "R0001.yaml~")
    (store.directory / "R0001.yaml").write_text(rule_text("R0001", 2))
    assert version_of(await next_change(changes)) == 2
    await no_change(changes)


async def test_scratch_files_cost_no_parse_and_no_log(
    store: FilesystemRuleStore, caplog: pytest.LogCaptureFixture
) -> None:
    changes = store.subscribe_changes()
    caplog.set_level(logging.DEBUG)
    for name in (".R0001.yaml.swp", "4913", "R0001.yaml~", ".#R0001.yaml", "notes.txt"):
        (store.directory / name).write_text("not: [valid")
        (store.directory / name).unlink()
    (store.directory / "R0002.yaml").write_text(rule_text("R0002"))
    assert (await next_change(changes)).rule_id == "R0002"
    assert store.reloads_rejected == 0
    assert store.problems == {}
    assert [r.message for r in caplog.records if r.name.startswith("decnet")] == []


async def test_a_malformed_edit_keeps_the_last_good_version(
    store: FilesystemRuleStore, caplog: pytest.LogCaptureFixture
) -> None:
    changes = store.subscribe_changes()
    path = store.directory / "R0001.yaml"
    path.write_text(rule_text("R0001", 2).replace("emits:", "emit:"))
    await poll(lambda: store.reloads_rejected == 1, message="rejection")
    [rule] = await store.load_compiled()
    assert rule.rule_version == 1
    problems = {p.field: p.reason for p in store.problems["R0001.yaml"]}
    assert "unknown key 'emit'" in problems["emit"]
    assert problems["emits"] == "required key is missing"
    assert any("R0001.yaml" in r.getMessage() for r in caplog.records)
    await no_change(changes, within=0.1)
    path.write_text(rule_text("R0001", 3))
    assert version_of(await next_change(changes)) == 3
    assert store.problems == {}


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00", b"- a list\n", b"a: &a [*a]\n",
                                     b"rule_id: R0001\nrule_id: R0001\n", b""])
async def test_the_watcher_survives_any_bad_file(store: FilesystemRuleStore,
                                                 garbage: bytes) -> None:
    changes = store.subscribe_changes()
    (store.directory / "R0001.yaml").write_bytes(garbage)
    await poll(lambda: store.reloads_rejected == 1, message="rejection")
    (store.directory / "R0002.yaml").write_text(rule_text("R0002"))
    assert (await next_change(changes)).rule_id == "R0002"
    assert {r.rule_id for r in await store.load_compiled()} == {"R0001", "R0002"}


async def test_a_huge_file_is_rejected_quickly(store: FilesystemRuleStore) -> None:
    with (store.directory / "R0003.yaml").open("wb") as handle:
        handle.write(b"name: " + b"x" * (50 * 1024 * 1024))
    await poll(lambda: store.reloads_rejected == 1, message="rejection")
    assert "limited" in store.problems["R0003.yaml"][0].reason


async def test_second_file_for_a_rule_is_rejected_and_first_kept(
    store: FilesystemRuleStore,
) -> None:
    changes = store.subscribe_changes()
    (store.directory / "R0001.yml").write_text(rule_text("R0001", 9))
    await poll(lambda: "R0001.yml" in store.problems, message="conflict")
    [problem] = store.problems["R0001.yml"]
    assert "R0001.yaml" in problem.reason and "R0001.yml" in problem.reason
    [rule] = await store.load_compiled()
    assert rule.rule_version == 1
    (store.directory / "R0001.yaml").unlink()
    assert version_of(await next_change(changes)) == 9
    await no_change(changes)
    assert store.problems == {}


async def test_a_conflict_at_start_resolves_when_one_file_goes(tmp_path: Path) -> None:
    (tmp_path / "R0007.yaml").write_text(rule_text("R0007"))
    (tmp_path / "R0007.yml").write_text(rule_text("R0007", 2))
    async with FilesystemRuleStore(tmp_path) as store:
        changes = store.subscribe_changes()
        (tmp_path / "R0007.yaml").write_text(rule_text("R0007", 3))
        await no_change(changes)
        assert await store.load_compiled() == []
        (tmp_path / "R0007.yml").unlink()
        assert version_of(await next_change(changes)) == 3
        assert store.problems == {}


async def test_a_resolved_conflict_leaves_no_stale_problem(store: FilesystemRuleStore) -> None:
    changes = store.subscribe_changes()
    (store.directory / "R0001.yml").write_text(rule_text("R0001", 5))
    await poll(lambda: "R0001.yml" in store.problems, message="conflict")
    (store.directory / "R0001.yml").unlink()
    await poll(lambda: store.problems == {}, message="conflict resolved")
    await no_change(changes)
    [rule] = await store.load_compiled()
    assert rule.rule_version == 1


async def test_two_files_for_a_rule_at_start_load_neither(tmp_path: Path) -> None:
    (tmp_path / "R0007.yaml").write_text(rule_text("R0007"))
    (tmp_path / "R0007.yml").write_text(rule_text("R0007", 2))
    async with FilesystemRuleStore(tmp_path) as store:
        assert await store.load_compiled() == []
        assert isinstance(store, FilesystemRuleStore)
        assert set(store.problems) == {"R0007.yaml", "R0007.yml"}


async def test_queue_overflow_triggers_a_rescan(tmp_path: Path) -> None:
    """Flood the kernel queue while the loop is blocked; the rescan finds the edits."""
    (tmp_path / "R0001.yaml").write_text(rule_text("R0001"))
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    async with FilesystemRuleStore(tmp_path) as store:
        changes = store.subscribe_changes()
        scratch = tmp_path / "scratch.yaml~"
        for _ in range(limit + 100):
            scratch.write_bytes(b"x")
        (tmp_path / "R0001.yaml").write_text(rule_text("R0001", 2))
        (tmp_path / "R0002.yaml").write_text(rule_text("R0002"))
        seen = {(await next_change(changes, timeout=20)).rule_id for _ in range(2)}
        assert seen == {"R0001", "R0002"}
        rules = {r.rule_id: r.rule_version for r in await store.load_compiled()}
        assert rules == {"R0001": 2, "R0002": 1}


async def test_edits_made_before_start_are_seen(tmp_path: Path) -> None:
    store = FilesystemRuleStore(tmp_path)
    assert await store.load_compiled() == []
    (tmp_path / "R0001.yaml").write_text(rule_text("R0001"))
    async with store:
        assert [r.rule_id for r in await store.load_compiled()] == ["R0001"]


async def test_state_is_stamped_on_reloaded_definitions(store: FilesystemRuleStore) -> None:
    await store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    changes = store.subscribe_changes()
    (store.directory / "R0001.yaml").write_text(rule_text("R0001", 2))
    change = await next_change(changes)
    assert isinstance(change.new_value, CompiledRule)
    assert change.new_value.state.state is StateName.DISABLED


async def test_stop_is_idempotent_and_stops_watching(tmp_path: Path) -> None:
    store = FilesystemRuleStore(tmp_path)
    await store.start()
    await store.start()
    changes = store.subscribe_changes()
    await store.stop()
    await store.stop()
    (tmp_path / "R0001.yaml").write_text(rule_text("R0001"))
    with pytest.raises(StopAsyncIteration):
        await anext(changes)
    assert store._watch_task is None
    assert store.reloads_applied == 0


def test_other_platforms_get_one_readable_line() -> None:
    with pytest.raises(UnsupportedPlatformError) as caught:
        ensure_linux("darwin")
    message = str(caught.value)
    assert "\n" not in message
    assert "database" in message and "darwin" in message


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    from decnet.ttp.errors import RuleSetError

    with pytest.raises(RuleSetError, match="does not exist"):
        await FilesystemRuleStore(tmp_path / "nope").load_compiled()


async def test_the_same_bad_bytes_are_rejected_once(store: FilesystemRuleStore) -> None:
    path = store.directory / "R0001.yaml"
    path.write_text("rule_id: [")
    await poll(lambda: store.reloads_rejected == 1, message="rejection")
    path.write_text("rule_id: [")
    (store.directory / "R0002.yaml").write_text(rule_text("R0002"))
    await poll(lambda: store.reloads_applied == 2, message="R0002")
    assert store.reloads_rejected == 1


async def test_a_fifo_named_like_a_rule_is_an_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "R0009.yaml")
    (tmp_path / "R0001.yaml").write_text(rule_text("R0001"))
    async with FilesystemRuleStore(tmp_path) as store:
        assert [r.rule_id for r in await store.load_compiled()] == ["R0001"]
        [problem] = store.problems["R0009.yaml"]
        assert "not a regular file" in problem.reason


async def test_a_fifo_created_while_watching_is_reported(store: FilesystemRuleStore,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    os.mkfifo(store.directory / "R0009.yaml")
    await poll(lambda: "R0009.yaml" in store.problems, message="the FIFO reported")
    [problem] = store.problems["R0009.yaml"]
    assert "not a regular file" in problem.reason
    assert any("R0009.yaml" in r.getMessage() for r in caplog.records
               if r.levelno >= logging.ERROR)


async def test_a_file_name_with_a_newline_cannot_forge_a_log_line(
        store: FilesystemRuleStore, caplog: pytest.LogCaptureFixture) -> None:
    name = "R0010\nERROR forged: all rules deleted\x1b[2J.yaml"
    (store.directory / name).write_text("rule_id: [")
    await poll(lambda: name in store.problems, message="the bad file reported")
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert messages and all("\n" not in m and "\x1b" not in m for m in messages)
    assert any("R0010\\x0aERROR forged" in m for m in messages)
