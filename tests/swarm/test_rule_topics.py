"""A real master with `--nats` announces every change on the bus's rule topics: a
subscriber on the shared NATS server (a plain client, and `NatsBus` with the deployment's
namespace) sees definitions, states and deletions, in revision order, under the prefix."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import nats
import nats.js.errors
import pytest
from nats.aio.msg import Msg

from decnet.bus.nats import NatsBus
from decnet.swarm.rule_topics import entry_message
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.sql.rows import LogEntry, StoredState
from decnet.vocabulary import STATE, RuleState, StateName
from tests.services import require_service
from tests.swarm.databases import database_params
from tests.swarm.scenario import initial_rules, rule_yaml, seed_directory, write_rule
from tests.swarm.swarm import Swarm
from tests.waiting import poll

pytestmark = [pytest.mark.swarm, pytest.mark.nats, pytest.mark.timeout(120)]

NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A prefix of this test's own on the shared server; its streams are deleted after."""
    parsed = urlparse(NATS_URL)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    nc = await nats.connect(NATS_URL)
    try:
        for stream in (f"{name}_changes", f"{name}_bus", f"KV_{name}_fleet"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


@pytest.mark.parametrize("database", database_params("sqlite", "postgres"), indirect=True)
async def test_the_master_announces_each_change_on_its_rule_topic(
        swarm: Swarm, prefix: str) -> None:
    received: list[Msg] = []

    async def collect(msg: Msg) -> None:
        received.append(msg)

    nc = await nats.connect(NATS_URL)
    bus = None
    try:
        await nc.subscribe(f"{prefix}.ttp.rule.>", cb=collect)
        swarm.master_args += ["--nats", NATS_URL, "--nats-prefix", prefix]
        await swarm.upgrade()
        seed_directory(swarm.rules_dir, initial_rules(2, 0))
        await swarm.start_master()
        await probe(swarm.db_url, received)
        seen = len(received)

        text = rule_yaml("S0000", 2, 7)
        write_rule(swarm.rules_dir, "S0000", text)
        await swarm.wait_stored("S0000", text)  # the definition first, then the state
        await swarm.cli("state", "set", "S0001", "disabled", "--reason", "noisy",
                        "--by", "alice", "--db", swarm.db_url)
        (swarm.rules_dir / "S0000.yaml").unlink()
        await poll(lambda: len(received) >= seen + 3, timeout=20,
                   message="three more changes")

        bodies: list[dict[str, Any]] = [json.loads(m.data) for m in received]
        assert [b["revision"] for b in bodies] == sorted(b["revision"] for b in bodies)
        assert len({b["revision"] for b in bodies}) == len(bodies)
        subjects = [m.subject for m in received[seen:]]
        assert subjects == [f"{prefix}.ttp.rule.reloaded.S0000",
                            f"{prefix}.ttp.rule.state.S0001",
                            f"{prefix}.ttp.rule.reloaded.S0000"]
        definition, state, deletion = bodies[seen:]
        assert definition["change_kind"] == "definition" and definition["rule_version"] == 2
        assert "yaml" not in definition  # ids, revision and state: never the rule's text
        assert state["change_kind"] == "state" and state["state"]["state"] == "disabled"
        assert state["state"]["reason"] == "noisy" and state["state"]["set_by"] == "alice"
        assert deletion == {"change_kind": "deleted", "rule_id": "S0000",
                            "revision": deletion["revision"],
                            "database": definition["database"]}

        # the bus's own client, in the deployment's namespace: the DESIGN topics, retained
        bus = await NatsBus.connect(NATS_URL, stream=f"{prefix}_bus", namespace=prefix)
        async with await bus.subscribe("ttp.rule.state.>", deliver="all") as sub:
            message = await anext(sub)
        assert message.topic == "ttp.rule.state.S0001" and len(received) == seen + 3
        oldest = next(b for b in bodies if b["change_kind"] == "state")  # a probe's
        assert json.loads(message.data) == oldest
    finally:
        if bus is not None:
            await bus.close()
        await nc.close()


async def probe(db_url: str, received: list[Msg]) -> None:
    """Change a state until an announcement arrives: the master's publisher and bus are
    up (it publishes what commits after it read the stream, not the history before)."""
    writer = DatabaseRuleStore(db_url)
    await writer.start()
    attempt = 0

    async def announced() -> bool:
        nonlocal attempt
        if received:
            return True
        attempt += 1
        await writer.set_state("S0001", RuleState(StateName.CLIPPED, confidence_max=0.5,
                                                  reason=f"probe {attempt}"), "probe")
        return False

    try:
        await poll(announced, timeout=30, interval=0.2, message="the first announcement")
        head = await writer.repo.head_revision()
        await poll(lambda: json.loads(received[-1].data)["revision"] == head, timeout=10,
                   message="the last probe announced")
    finally:
        await writer.stop()


def test_a_state_reverted_by_expiry_is_announced_as_the_default() -> None:
    topic, data = entry_message("db", LogEntry(7, "R0001", STATE, None, None))
    assert topic == "ttp.rule.state.R0001"
    assert json.loads(data)["state"]["state"] == "enabled"
    topic, data = entry_message("db", LogEntry(
        8, "R0001", STATE, None, StoredState(8, RuleState(StateName.CLIPPED,
                                                          confidence_max=0.5))))
    assert json.loads(data)["state"]["confidence_max"] == 0.5


def test_a_rule_id_no_topic_can_carry_is_refused() -> None:
    with pytest.raises(ValueError):
        entry_message("db", LogEntry(9, "R.*", STATE, None, None))
