"""The master and worker as processes: start-up order, readiness, the HTTP API over a
real socket, clean shutdown on SIGTERM/SIGINT, exit codes."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.swarm.databases import database_params
from tests.swarm.scenario import initial_rules, rule_yaml, seed_directory, write_rule
from tests.swarm.swarm import Swarm
from tests.waiting import poll

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(60)]

SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE
async def test_worker_waits_for_the_database_then_serves(swarm: Swarm) -> None:
    """A worker started before the schema exists answers 503 and retries; once the
    database is migrated and the master has synced, it is ready and tags events."""
    worker = swarm.add_worker()
    await swarm.start_worker(worker, ready=False)
    assert worker.client is not None
    assert (await worker.client.get("/healthz")).status_code == 503
    assert (await worker.client.post("/events", json=[])).status_code == 503

    await swarm.upgrade()
    seed_directory(swarm.rules_dir, initial_rules(2, 0))
    write_rule(swarm.rules_dir, "R0001", (Path(__file__).resolve().parents[2] / "rules" / "ttp"
                                          / "R0001.yaml").read_text())
    await swarm.start_master()
    await worker.proc.wait_event("ready")
    await swarm.wait_converged()

    async def healthy() -> bool:
        assert worker.client is not None
        return (await worker.client.get("/healthz")).status_code == 200

    await poll(healthy, message="healthz 200")
    event = {"source_kind": "command", "source_id": "c1", "payload": {"command_text": "uname -a"}}
    tags = (await worker.client.post("/events", json=event)).json()
    assert [t["rule_id"] for t in tags] == ["R0001"]
    metrics = (await worker.client.get("/metrics")).text
    assert "decnet_ttp_events_evaluated_total 1.0" in metrics
    assert "decnet_ttp_db_statements_total" in metrics
    status = await worker.status()
    assert status["load_errors"] >= 0 and status["revision"] >= 3

    assert await worker.proc.stop() == 0
    assert worker.proc.event("stopped") == {"event": "stopped", "code": 0}
    with pytest.raises(httpx.HTTPError):
        await worker.client.get("/healthz")


@SQLITE
async def test_sigint_stops_master_and_worker_cleanly(swarm: Swarm) -> None:
    await swarm.upgrade()
    seed_directory(swarm.rules_dir, initial_rules(2, 2))
    await swarm.start_master()
    [worker] = await swarm.start_workers(1)
    await swarm.wait_converged()
    for proc in (worker.proc, swarm.master):
        proc.signal(signal.SIGINT)
        assert proc.process is not None
        assert await proc.process.wait() == 0
        assert proc.event("stopped") == {"event": "stopped", "code": 0}


@SQLITE
async def test_master_without_rules_directory_exits_2(swarm: Swarm, tmp_path: Path) -> None:
    await swarm.upgrade()
    master = swarm.add_master(rules_dir=tmp_path / "missing")
    await master.start()
    assert master.process is not None
    assert await master.process.wait() == 2
    assert "cannot watch the rules directory" in master.log_path.read_text()


@SQLITE
async def test_master_restarted_sees_edits_made_while_it_was_stopped(swarm: Swarm) -> None:
    """A clean stop (SIGTERM) releases the lease; the next start reconciles at once."""
    await swarm.upgrade()
    seed_directory(swarm.rules_dir, initial_rules(2, 2))
    await swarm.start_master()
    [worker] = await swarm.start_workers(1)
    await swarm.wait_converged()
    assert await swarm.master.stop() == 0
    write_rule(swarm.rules_dir, "S0000", rule_yaml("S0000", 5, 1))
    (swarm.rules_dir / "V0001.yaml").unlink()
    await swarm.start_master()
    view = await swarm.wait_converged()
    assert view["S0000"]["rule_version"] == 5
    assert "V0001" not in view
    assert (await worker.status())["full_loads"] == 1


@pytest.mark.parametrize("database", database_params("postgres"), indirect=True)
async def test_postgres_notifications_wake_workers_unless_no_listen(swarm: Swarm) -> None:
    await swarm.upgrade()
    seed_directory(swarm.rules_dir, initial_rules(2, 0))
    await swarm.start_master()
    [listening] = await swarm.start_workers(1, poll_interval=5.0)
    [polling] = await swarm.start_workers(1, poll_interval=0.1, listen=False)
    await swarm.wait_converged()
    version = 0

    async def woken_by_a_notification() -> bool:
        # the worker's LISTEN connection comes up beside its first load: an edit saved
        # before it listens is found by the poll, so edit until one is notified
        nonlocal version
        version += 1
        text = rule_yaml("S0001", 3, version)
        write_rule(swarm.rules_dir, "S0001", text)
        # stored first: a worker matching the database before the master saved the edit
        # would not have applied it yet (its notification may be on the way)
        await swarm.wait_stored("S0001", text)
        await swarm.wait_converged()  # within 20 s: the 5 s poll alone could also make it
        return bool((await listening.status())["notifications"] > 0)

    await poll(woken_by_a_notification, timeout=60, interval=0.2,
               message="a notification to wake the listening worker")
    assert (await polling.status())["notifications"] == 0
    response = await listening.client.get("/rules")  # type: ignore[union-attr]
    assert int(response.headers["X-Decnet-TTP-Revision"]) == \
        (await listening.status())["revision"]
