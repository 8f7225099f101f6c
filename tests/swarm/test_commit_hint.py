"""`state set|clear --nats` with real processes: the writer's commit hint wakes the
lease holder's publisher (MariaDB has no NOTIFY), and a NATS that is down or silent at
the writer costs it nothing but the hint."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import nats
import pytest

from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.database.jetstream import NatsNames, decode_entry
from tests.swarm.databases import database_params
from tests.swarm.scenario import initial_rules
from tests.swarm.swarm import Swarm
from tests.swarm.test_fleet_nats import shared_nats, start, use_nats
from tests.waiting import poll

pytestmark = [pytest.mark.swarm, pytest.mark.nats, pytest.mark.timeout(120)]

__all__ = ["shared_nats"]  # the fixture, imported for this module's tests

#: Polls that never come within a test: whatever the workers get was pushed by a hint.
NEVER = "600"


async def head_of(db_url: str) -> tuple[int, str]:
    store = DatabaseRuleStore(db_url)
    await store.start()
    try:
        head = await store.repo.head()
        return head.revision, head.identity
    finally:
        await store.stop()


async def last_published(url: str, names: NatsNames) -> int:
    nc = await nats.connect(url)
    try:
        msg = await nc.jetstream().get_last_msg(names.stream, names.subject)
        return decode_entry(msg.data or b"")[1].revision
    finally:
        await nc.close()


@pytest.mark.parametrize("database", database_params("mariadb", "sqlite"), indirect=True)
async def test_a_writer_s_hint_publishes_its_change(swarm: Swarm, shared_nats: str) -> None:
    """The publisher's poll is 600 s and the workers' too: `state set --nats` reaches the
    stream (so the hint woke the publisher) and every worker applies it from there."""
    prefix = use_nats(swarm, shared_nats)
    swarm.master_args += ["--nats-publish-poll", NEVER]
    swarm.worker_args += ["--nats-safety-poll", NEVER]
    rules = initial_rules(2, 10)
    rule_id = sorted(rules)[0]
    await start(swarm, rules, workers=2)
    names = NatsNames(prefix)
    before = [await w.status() for w in swarm.workers]
    for n, state in enumerate(["disabled", "enabled"]):
        args = ("state", "set", rule_id, state, "--reason", f"hint {n}") if state != "enabled" \
            else ("state", "clear", rule_id)
        await swarm.cli(*args, "--db", swarm.db_url, "--nats", shared_nats,
                        "--nats-prefix", prefix)
        head, _ = await head_of(swarm.db_url)

        async def published(head: int = head) -> bool:
            with contextlib.suppress(Exception):
                return await last_published(shared_nats, names) == head
            return False

        await poll(published, timeout=20, interval=0.05,
                   message=f"revision {head} in the stream")
        await swarm.wait_held(rule_id, state, timeout=20)
    for worker, was in zip(swarm.workers, before, strict=True):
        status = await worker.status()
        assert status["pushed"] - was["pushed"] >= 2, status


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A NATS URL whose server accepts the connection and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"nats://127.0.0.1:{server.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"nats://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
async def upgraded(swarm: Swarm) -> AsyncIterator[Swarm]:
    await swarm.upgrade()
    yield swarm


@pytest.mark.parametrize("database", database_params("sqlite"), indirect=True)
@pytest.mark.parametrize("where", ["refused", "silent"])
async def test_a_nats_down_at_the_writer_costs_only_the_hint(upgraded: Swarm,
                                                             where: str) -> None:
    with contextlib.ExitStack() as stack:
        url = closed_port() if where == "refused" else stack.enter_context(silent_listener())
        code, out, err = await upgraded.cli(
            "state", "set", "R0009", "disabled", "--reason", "nats down", "--db",
            upgraded.db_url, "--nats", url, "--nats-prefix", "tdown", check=False)
        assert code == 0, err
        assert "R0009: disabled" in out
        code, out, _ = await upgraded.cli("state", "clear", "R0009", "--db", upgraded.db_url,
                                          "--nats", url, check=False)
        assert code == 0 and "R0009: enabled" in out


@pytest.mark.parametrize("database", database_params("sqlite"), indirect=True)
async def test_a_bad_prefix_is_refused_before_the_write(upgraded: Swarm) -> None:
    code, _, err = await upgraded.cli(
        "state", "set", "R0009", "disabled", "--reason", "x", "--db", upgraded.db_url,
        "--nats", closed_port(), "--nats-prefix", "bad.prefix", check=False)
    assert code == 2, err
    code, out, _ = await upgraded.cli("state", "get", "R0009", "--db", upgraded.db_url)
    assert "R0009: enabled" in out
