"""Swarm mode with real processes: a master, three workers, one database.

Every test starts its processes on a fresh database and kills them at teardown.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.swarm.databases import database_params
from tests.swarm.scenario import (
    ExpectedState,
    Model,
    StateOp,
    execute,
    initial_rules,
    plan,
    rule_yaml,
    seed_directory,
    write_rule,
)
from tests.swarm.skew import skewed_pythonpath
from tests.swarm.swarm import Swarm, Worker, diff
from tests.swarm.writers import CliWriter, LocalWriter
from tests.tcp_proxy import TcpProxy
from tests.waiting import poll

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(90)]

N_OPS = 220


async def start(swarm: Swarm, rules: dict[str, str], workers: int = 3) -> None:
    await swarm.upgrade()
    seed_directory(swarm.rules_dir, rules)
    await swarm.start_master()
    await swarm.start_workers(workers)
    await swarm.wait_converged()


async def test_scripted_operations_converge(swarm: Swarm) -> None:
    """≥ 200 mixed operations through the master's directory and the CLI; every worker
    ends on the database's truth, and that truth is what the operations meant."""
    rules = initial_rules(8, 12)
    ops, model = plan(seed=4, n_ops=N_OPS, initial=rules)
    await start(swarm, rules)
    cli = CliWriter(swarm)
    async with LocalWriter(swarm.db_url) as local:
        await execute(ops, swarm.rules_dir, cli=cli, local=local, settle=swarm.wait_stored,
                      seed=4)
    assert cli.calls >= 8 and local.calls >= 30
    await swarm.wait_converged(expected=model.expected(), timeout=30)
    # A TTL set from a process that then exits, and nobody reads the state: every
    # worker holds it, then reverts it (its own timer, or the tail carrying the
    # revert of the worker whose timer won).
    await cli("S0000", StateOp("disabled", ttl_seconds=2.5, reason="brief"))
    await swarm.wait_held("S0000", "disabled")
    await swarm.wait_reverted()
    await swarm.wait_held("S0000", "enabled")
    await swarm.wait_converged()
    for worker in swarm.workers:
        status = await worker.status()
        assert status["poll_errors"] == 0, status
        assert status["full_loads"] == 1, status  # never had to reload everything


async def test_worker_sigkilled_midstream_and_restarted(swarm: Swarm) -> None:
    rules = initial_rules(6, 10)
    ops, model = plan(seed=11, n_ops=150, initial=rules, cli_share=0.0)
    await start(swarm, rules)
    victim = swarm.workers[1]
    async with LocalWriter(swarm.db_url) as local:
        script = asyncio.get_running_loop().create_task(
            execute(ops, swarm.rules_dir, cli=local, local=local, settle=swarm.wait_stored,
                    seed=11, max_gap=0.02))
        # Kill once the stream is well under way, while it is still flowing.
        await poll_changes(victim, at_least=20)
        await victim.proc.kill()
        assert not script.done()
        await script
    await swarm.start_worker(victim)
    await swarm.wait_converged(expected=model.expected(), timeout=30)


async def poll_changes(worker: Worker, at_least: int) -> None:
    async def applied() -> bool:
        return int((await worker.status())["changes_applied"]) >= at_least

    await poll(applied, timeout=20, interval=0.02, message=f"{worker.name} to apply changes")


async def test_master_down_while_files_change(swarm: Swarm) -> None:
    """Files added, edited, broken and deleted while no master runs reach the database
    when it comes back; a broken file keeps its last good row."""
    rules = initial_rules(4, 8)
    await start(swarm, rules)
    await swarm.master.kill()
    expected = dict(rules)
    for i in range(4):  # added
        rule_id = f"N{i:04d}"
        expected[rule_id] = rule_yaml(rule_id, 1, 50 + i)
        write_rule(swarm.rules_dir, rule_id, expected[rule_id])
    for rule_id in ("V0000", "V0001", "V0002"):  # deleted
        (swarm.rules_dir / f"{rule_id}.yaml").unlink()
        del expected[rule_id]
    expected["S0001"] = rule_yaml("S0001", 2, 77)  # edited
    write_rule(swarm.rules_dir, "S0001", expected["S0001"])
    write_rule(swarm.rules_dir, "V0003", "rule_id: V0003\nrule_version: [\n")  # broken
    await swarm.start_master()
    model = Model(rules=expected, versions={r: 2 if r == "S0001" else 1 for r in expected})
    await swarm.wait_converged(expected=model.expected())
    # and it follows edits again
    write_rule(swarm.rules_dir, "V0003", rule_yaml("V0003", 2, 9))
    model.rules["V0003"], model.versions["V0003"] = rule_yaml("V0003", 2, 9), 2
    await swarm.wait_converged(expected=model.expected())


@pytest.mark.parametrize("database", database_params("postgres", "mariadb"), indirect=True)
async def test_database_connection_cut_and_restored(swarm: Swarm) -> None:
    """The workers reach the database through a proxy; it drops every connection and
    refuses new ones for several poll intervals while the master and an operator keep
    writing; once restored, every worker catches up without loss."""
    url = make_url(swarm.db_url)
    rules = initial_rules(6, 8)
    ops, model = plan(seed=23, n_ops=80, initial=rules, cli_share=0.0)
    async with TcpProxy(url.host or "127.0.0.1", url.port or 0) as proxy:
        proxied = url.set(host=proxy.host, port=proxy.port).render_as_string(
            hide_password=False)
        await swarm.upgrade()
        seed_directory(swarm.rules_dir, rules)
        await swarm.start_master()
        for _ in range(3):
            swarm.add_worker(db_url=proxied)
        await asyncio.gather(*(swarm.start_worker(w) for w in swarm.workers))
        await swarm.wait_converged()
        errors = {w.name: (await w.status())["poll_errors"] for w in swarm.workers}

        proxy.outage()
        async with LocalWriter(swarm.db_url) as local:
            await execute(ops, swarm.rules_dir, cli=local, local=local,
                          settle=swarm.wait_stored, seed=23)

        async def every_worker_failed_several_polls() -> bool:
            statuses = [await w.status() for w in swarm.workers]
            return all(s["poll_errors"] >= errors[w.name] + 3
                       for w, s in zip(swarm.workers, statuses, strict=True))

        await poll(every_worker_failed_several_polls, timeout=20,
                   message="every worker to fail several polls")
        truth = await swarm.truth.view()
        for worker in swarm.workers:
            assert diff(truth, await worker.view()), f"{worker.name} saw through the cut?"
        proxy.resume()
        await swarm.wait_converged(expected=model.expected(), timeout=30)
        for worker in swarm.workers:
            status = await worker.status()
            assert status["last_sync_age_seconds"] is not None
            assert status["last_sync_age_seconds"] < 5


@pytest.mark.parametrize("skew", [-30.0, 30.0], ids=["behind", "ahead"])
async def test_writer_clock_skew(swarm: Swarm, tmp_path: Path, skew: float) -> None:
    """A master and an operator whose wall clocks are 30 s off, interleaved with writers
    on a correct clock: every change reaches every worker, in order, at once."""
    skewed_env = {"PYTHONPATH": skewed_pythonpath(tmp_path / "skew", skew)}
    rules = initial_rules(4, 4)
    await swarm.upgrade()
    seed_directory(swarm.rules_dir, rules)
    skewed_master = swarm.add_master("skewed-master", env=skewed_env)
    await swarm.start_master(skewed_master)
    await swarm.start_workers(3)
    await swarm.wait_converged()
    skewed_cli = CliWriter(swarm, env=skewed_env)
    honest_cli = CliWriter(swarm)
    model = Model(rules=dict(rules), versions={r: 1 for r in rules})
    async with LocalWriter(swarm.db_url) as honest_local:
        for step in range(6):
            # the skewed master writes a definition...
            rule_id = f"S{step % 4:04d}"
            version = model.versions[rule_id] + 1
            model.rules[rule_id], model.versions[rule_id] = \
                rule_yaml(rule_id, version, step), version
            write_rule(swarm.rules_dir, rule_id, model.rules[rule_id])
            await swarm.wait_converged(expected=model.expected(), timeout=10)
            # ...then correct clocks and the skewed operator write states
            writer = (honest_local, skewed_cli, honest_cli)[step % 3]
            op = StateOp("disabled" if step % 2 else "clipped",
                         confidence_max=None if step % 2 else 0.3, reason=f"step {step}")
            await writer(f"V{step % 4:04d}", op)
            model.states[f"V{step % 4:04d}"] = ExpectedState(op, expires=False)
            await swarm.wait_converged(expected=model.expected(), timeout=10)
    # The skew was real: rows stamped by the skewed processes are 30 s off.
    rules_rows, state_rows = await swarm.truth.rows()
    now = datetime.now(UTC)
    assert abs((rules_rows["S0001"].updated_at - now).total_seconds() - skew) < 10
    assert abs((state_rows["V0000"].set_at - now).total_seconds() - skew) < 10


async def test_two_masters_on_one_database(swarm: Swarm, tmp_path: Path) -> None:
    """A second master started by mistake (on another, different checkout) stands by and
    writes nothing; when the first stops, it takes over and the database follows its
    directory."""
    rules_a = initial_rules(4, 4)
    await start(swarm, rules_a)
    dir_b = tmp_path / "rules-b"
    rules_b = {**initial_rules(2, 0), "B0001": rule_yaml("B0001", 1, 3)}
    seed_directory(dir_b, rules_b)
    master_b = swarm.add_master("master-b", rules_dir=dir_b)
    await swarm.start_master(master_b, wait=False)
    await master_b.wait_event("standby")
    # Both directories change; only the active master's edits reach the database.
    write_rule(dir_b, "B0002", rule_yaml("B0002", 1, 4))
    rules_a["S0002"] = rule_yaml("S0002", 2, 5)
    write_rule(swarm.rules_dir, "S0002", rules_a["S0002"])
    model_a = Model(rules=dict(rules_a), versions={r: 2 if r == "S0002" else 1
                                                   for r in rules_a})
    await swarm.wait_converged(expected=model_a.expected())
    assert master_b.event("ready") is None
    rules_rows, _ = await swarm.truth.rows()
    assert {row.updated_by for row in rules_rows.values()} == {"master"}

    assert await swarm.master.stop() == 0  # releases the lease
    await master_b.wait_event("ready")
    rules_b["B0002"] = rule_yaml("B0002", 1, 4)
    model_b = Model(rules=rules_b, versions={r: 1 for r in rules_b})
    await swarm.wait_converged(expected=model_b.expected())
    assert master_b.running
