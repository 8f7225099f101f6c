"""A fleet through NATS JetStream with real processes: a master publishing each revision,
workers applying it without reading the database, `fleet status`, and NATS faults (on a
`nats-server` of the test's own, never the shared one)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import nats
import nats.js.errors
import pytest

from tests.nats_server import NatsServer, own_nats_server
from tests.services import require_service
from tests.swarm.scenario import StateOp, execute, initial_rules, plan, seed_directory
from tests.swarm.swarm import Swarm, Worker
from tests.swarm.writers import CliWriter, LocalWriter
from tests.waiting import poll

pytestmark = [pytest.mark.swarm, pytest.mark.nats, pytest.mark.timeout(120)]

SHARED_NATS = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"


@pytest.fixture
async def shared_nats() -> AsyncIterator[str]:
    """The shared server; the streams and buckets the test made there are deleted after."""
    parsed = urlparse(SHARED_NATS)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    yield SHARED_NATS
    await delete_prefix(SHARED_NATS, USED_PREFIXES)


USED_PREFIXES: list[str] = []


async def delete_prefix(url: str, prefixes: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        while prefixes:
            prefix = prefixes.pop()
            for stream in (f"{prefix}_changes", f"{prefix}_bus", f"KV_{prefix}_fleet"):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(stream)
    finally:
        await nc.close()


@pytest.fixture
async def private_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with own_nats_server(tmp_path) as server:
        yield server


def use_nats(swarm: Swarm, url: str) -> str:
    """Master and workers of `swarm` on NATS at `url`, under a prefix of this test's own."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    USED_PREFIXES.append(prefix)
    swarm.master_args += ["--nats", url, "--nats-prefix", prefix]
    swarm.worker_args += ["--nats", url, "--nats-prefix", prefix, "--nats-safety-poll", "30",
                          "--report-interval", "0.3"]
    return prefix


async def start(swarm: Swarm, rules: dict[str, str], workers: int = 3) -> None:
    await swarm.upgrade()
    seed_directory(swarm.rules_dir, rules)
    await swarm.start_master()
    await swarm.start_workers(workers)
    await swarm.wait_converged()


async def feed_is(worker: Worker, feed: str) -> bool:
    assert worker.client is not None
    body = (await worker.client.get("/healthz")).json()
    return body.get("feed") == feed


async def all_feeds(swarm: Swarm, feed: str, timeout: float = 15.0) -> None:
    for worker in swarm.workers:
        await poll(lambda w=worker: feed_is(w, feed), timeout=timeout,  # type: ignore[misc]
                   interval=0.05, message=f"{worker.name} on {feed}")


async def vouched_for(worker: Worker) -> bool:
    """The master's head beacon vouches for `worker`: it runs no safety poll."""
    assert worker.client is not None
    text = (await worker.client.get("/metrics")).text
    return "decnet_ttp_nats_head_beacon_fresh 1.0" in text


async def run_script(swarm: Swarm, seed: int, n_ops: int, rules: dict[str, str]) -> None:
    ops, model = plan(seed=seed, n_ops=n_ops, initial=rules, cli_share=0.1)
    cli = CliWriter(swarm)
    async with LocalWriter(swarm.db_url) as local:
        await execute(ops, swarm.rules_dir, cli=cli, local=local, settle=swarm.wait_stored,
                      seed=seed)
    await swarm.wait_converged(expected=model.expected(), timeout=30)


async def test_scripted_operations_converge_through_nats(swarm: Swarm, shared_nats: str) -> None:
    """Every change reaches every worker through the stream: the workers converge on the
    database's truth with their safety-net poll at 30 s, having read nothing per change;
    `fleet status` shows them all at the head revision with one ruleset hash."""
    prefix = use_nats(swarm, shared_nats)
    swarm.master_args += ["--http", "127.0.0.1:0"]
    rules = initial_rules(6, 10)
    await start(swarm, rules)
    await all_feeds(swarm, "nats")
    for worker in swarm.workers:
        await poll(lambda w=worker: vouched_for(w), timeout=15,  # type: ignore[misc]
                   interval=0.1, message=f"{worker.name} vouched for by the beacon")
    before = [await w.status() for w in swarm.workers]
    await run_script(swarm, seed=7, n_ops=120, rules=rules)
    for worker, was in zip(swarm.workers, before, strict=True):
        status = await worker.status()
        assert status["nats"] is True, status
        assert status["pushed"] - was["pushed"] >= 100, status
        assert status["full_loads"] == 1, status
        # the beacon vouches for the watermark: no safety poll, no read per change (the
        # statements a worker still issues are its attempts at reverting expired states)
        assert status["polls"] - was["polls"] == 0, status
        assert status["push_gaps"] == was["push_gaps"], status

    async def all_ok() -> dict[str, object] | None:
        code, out, _ = await swarm.cli("fleet", "status", "--db", swarm.db_url, "--nats",
                                       shared_nats, "--nats-prefix", prefix, "--json",
                                       check=False)
        report = json.loads(out)
        workers = report["workers"]
        if code == 0 and len(workers) == 3 and all(w["status"] == "ok" for w in workers):
            return dict(report)
        return None

    report = await poll(all_ok, timeout=10, interval=0.2, message="fleet status all ok")
    workers = report["workers"]
    assert isinstance(workers, list)
    assert {w["revision"] for w in workers} == {report["head_revision"]}
    assert len({w["ruleset_sha256"] for w in workers}) == 1
    assert {w["lag"] for w in workers} == {0}
    assert {w["http"] for w in workers} == {w.url for w in swarm.workers}

    admin = await swarm.masters[0].wait_event("admin")
    master_url = f"http://{admin['host']}:{admin['port']}"
    async with httpx.AsyncClient(base_url=master_url, timeout=10) as client:
        async def master_sees_the_fleet() -> bool:
            text = (await client.get("/metrics")).text
            return ("decnet_ttp_fleet_workers 3\n" in text
                    and "decnet_ttp_fleet_workers_behind 0\n" in text
                    and "decnet_ttp_fleet_workers_silent 0\n" in text)

        await poll(master_sees_the_fleet, timeout=10, interval=0.2,
                   message="the master's /metrics counting three workers, none behind")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_nats_down_at_start_then_back(swarm: Swarm, private_nats: NatsServer) -> None:
    """Workers started while NATS is away follow the database (healthz says so), and
    switch to the stream once NATS is back, losing nothing."""
    await private_nats.stop()
    use_nats(swarm, private_nats.url)
    rules = initial_rules(4, 6)
    await start(swarm, rules)
    await all_feeds(swarm, "database")
    assert swarm.workers[0].client is not None
    detail = (await swarm.workers[0].client.get("/healthz")).json()["detail"]
    assert "following the database" in detail
    metrics = (await swarm.workers[0].client.get("/metrics")).text
    assert "decnet_ttp_nats_connected 0.0" in metrics
    await CliWriter(swarm)("S0000", StateOp("disabled", reason="while NATS is down"))
    await swarm.wait_held("S0000", "disabled")
    await private_nats.start()
    await all_feeds(swarm, "nats")
    before = [(await w.status())["pushed"] for w in swarm.workers]
    await CliWriter(swarm)("S0001", StateOp("disabled", reason="NATS is back"))
    await swarm.wait_held("S0001", "disabled")
    await swarm.wait_converged()
    for worker, pushed in zip(swarm.workers, before, strict=True):
        assert (await worker.status())["pushed"] > pushed


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_nats_restarted_mid_stream(swarm: Swarm, private_nats: NatsServer) -> None:
    """NATS stops in the middle of a script and comes back: the workers follow the
    database meanwhile and converge on its truth; then they are on the stream again."""
    use_nats(swarm, private_nats.url)
    rules = initial_rules(6, 10)
    await start(swarm, rules)
    await all_feeds(swarm, "nats")
    ops, model = plan(seed=21, n_ops=90, initial=rules, cli_share=0.0)
    async with LocalWriter(swarm.db_url) as local:
        await execute(ops[:30], swarm.rules_dir, cli=local, local=local,
                      settle=swarm.wait_stored, seed=21)
        await private_nats.stop()
        await execute(ops[30:60], swarm.rules_dir, cli=local, local=local,
                      settle=swarm.wait_stored, seed=21)
        await all_feeds(swarm, "database")
        await private_nats.start()
        await execute(ops[60:], swarm.rules_dir, cli=local, local=local,
                      settle=swarm.wait_stored, seed=21)
    await swarm.wait_converged(expected=model.expected(), timeout=30)
    await all_feeds(swarm, "nats")
    for worker in swarm.workers:
        assert (await worker.status())["full_loads"] == 1


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_stream_purged_mid_stream(swarm: Swarm, private_nats: NatsServer) -> None:
    """The change stream is purged (and its messages lost) while changes flow: the
    publisher carries on, the workers read the gap from the database, nothing is lost."""
    prefix = use_nats(swarm, private_nats.url)
    rules = initial_rules(6, 10)
    await start(swarm, rules)
    await all_feeds(swarm, "nats")
    ops, model = plan(seed=5, n_ops=80, initial=rules, cli_share=0.0)
    nc = await nats.connect(private_nats.url)
    try:
        async with LocalWriter(swarm.db_url) as local:
            await execute(ops[:40], swarm.rules_dir, cli=local, local=local,
                          settle=swarm.wait_stored, seed=5)
            await nc.jetstream().purge_stream(f"{prefix}_changes")
            await execute(ops[40:], swarm.rules_dir, cli=local, local=local,
                          settle=swarm.wait_stored, seed=5)
    finally:
        await nc.close()
    await swarm.wait_converged(expected=model.expected(), timeout=30)
    await all_feeds(swarm, "nats")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_stalled_worker_catches_up(swarm: Swarm, private_nats: NatsServer) -> None:
    """A worker frozen (SIGSTOP) while changes flow is a consumer that cannot keep up:
    when it runs again it converges on the database's truth without reloading."""
    use_nats(swarm, private_nats.url)
    rules = initial_rules(6, 10)
    await start(swarm, rules)
    await all_feeds(swarm, "nats")
    ops, model = plan(seed=9, n_ops=80, initial=rules, cli_share=0.0)
    frozen = swarm.workers[0].proc.process
    assert frozen is not None
    async with LocalWriter(swarm.db_url) as local:
        frozen.send_signal(signal.SIGSTOP)
        try:
            await execute(ops, swarm.rules_dir, cli=local, local=local,
                          settle=swarm.wait_stored, seed=9)
        finally:
            frozen.send_signal(signal.SIGCONT)
    await swarm.wait_converged(expected=model.expected(), timeout=30)
    status = await swarm.workers[0].status()
    assert status["full_loads"] == 1, status


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_the_master_shows_what_the_workers_tagged(swarm: Swarm, shared_nats: str) -> None:
    """Real workers count the tags of the events posted to them and report the counts;
    the master's console sums them: rule hits, tags per minute, the observed technique
    and a sample tag, with the attacker's text escaped."""
    use_nats(swarm, shared_nats)
    swarm.master_args += ["--http", "127.0.0.1:0"]
    shipped = Path(__file__).resolve().parents[2] / "rules" / "ttp" / "R0001.yaml"
    await start(swarm, {"R0001": shipped.read_text(encoding="utf-8")}, workers=2)
    _, out, _ = await swarm.cli("token", "create", "--role", "viewer", "--name", "analyst",
                                "--db", swarm.db_url, "--json")
    token = json.loads(out)["token"]
    for n, worker in enumerate(swarm.workers):
        assert worker.client is not None
        events = [{"source_kind": "command", "source_id": f"w{n}-{k}", "decky_id": "decky-03",
                   "payload": {"command_text": f"uname -a; echo <b>{n}</b>"}}
                  for k in range(n + 2)]  # 2 + 3 tags
        reply = await worker.client.post("/events", json=events)
        assert [t["rule_id"] for t in reply.json()] == ["R0001"] * (n + 2)
        await worker.client.post("/events", json={"source_kind": "command", "source_id": "q",
                                                  "payload": {"command_text": "ls"}})

    admin = await swarm.masters[0].wait_event("admin")
    async with httpx.AsyncClient(base_url=f"http://{admin['host']}:{admin['port']}",
                                 timeout=10) as client:
        login = await client.get("/ui/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert csrf is not None
        await client.post("/ui/login", data={"token": token, "csrf_token": csrf.group(1)})

        async def counted() -> str | None:
            page = (await client.get("/ui/rules")).text
            row = re.search(r'<tr data-rule="R0001">.*?</tr>', page, re.S)
            assert row is not None, page
            done = 'hits-hour">5<' in row.group(0) and 'hits-day">5<' in row.group(0)
            return page if done else None

        await poll(counted, timeout=15, interval=0.2, message="R0001 with 5 hits on the master")
        overview = (await client.get("/ui/")).text
        assert 'id="tags-last-hour">5' in overview
        coverage = (await client.get("/ui/coverage?shade=observed")).text
        assert 'data-technique="T1082" data-observed="5"' in coverage
        drill = (await client.get("/ui/coverage/TA0007/T1082")).text
        assert drill.count('class="sample"') == 2  # the latest of each worker
        assert "uname -a; echo &lt;b&gt;1&lt;/b&gt;" in drill and "<b>1</b>" not in drill
