"""A master and workers as real processes over one database, and the truth they must match."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from decnet.ttp.store.sql.models import RuleRow, StateRow
from tests.swarm.harness import Proc, ProcessGroup, cli_command, run_cli
from tests.waiting import poll

#: Fields of `GET /rules` that must equal the database's truth.
COMPARED = ("rule_version", "yaml_sha256", "state", "confidence_max", "expires_at",
            "reason", "set_by")

View = dict[str, dict[str, Any]]


@dataclass
class Worker:
    name: str
    proc: Proc
    url: str | None = None
    client: httpx.AsyncClient | None = None

    async def rules(self) -> list[dict[str, Any]]:
        assert self.client is not None, f"{self.name} is not started"
        response = await self.client.get("/rules")
        response.raise_for_status()
        body: list[dict[str, Any]] = response.json()
        return body

    async def view(self) -> View:
        return {r["rule_id"]: {k: r.get(k) for k in COMPARED} for r in await self.rules()}

    async def status(self) -> dict[str, Any]:
        assert self.client is not None
        response = await self.client.get("/status")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def truth_entry(rule: RuleRow, state: StateRow | None, now: datetime) -> dict[str, Any]:
    """What a worker must show for `rule`: its row, and its state unless expired."""
    entry: dict[str, Any] = {
        "rule_version": rule.rule_version,
        "yaml_sha256": hashlib.sha256(rule.yaml_content.encode("utf-8")).hexdigest(),
        "state": "enabled", "confidence_max": None, "expires_at": None,
        "reason": None, "set_by": None,
    }
    if state is None or (state.expires_at is not None and state.expires_at <= now):
        return entry
    if state.state == "enabled" and state.expires_at is None:
        return entry
    entry.update(state=state.state, confidence_max=state.confidence_max,
                 expires_at=_iso(state.expires_at), reason=state.reason, set_by=state.set_by)
    return entry


class Truth:
    """Reads the database directly (not through the store under test)."""

    def __init__(self, db_url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(db_url)

    async def view(self) -> View:
        async with self.engine.connect() as conn:
            rules = (await conn.execute(select(RuleRow))).all()
            states = {row.rule_id: row for row in (await conn.execute(select(StateRow))).all()}
        now = datetime.now(UTC)
        return {r.rule_id: truth_entry(r, states.get(r.rule_id), now)  # type: ignore[arg-type]
                for r in rules}

    async def rows(self) -> tuple[dict[str, Any], dict[str, Any]]:
        async with self.engine.connect() as conn:
            rules = {r.rule_id: r for r in (await conn.execute(select(RuleRow))).all()}
            states = {r.rule_id: r for r in (await conn.execute(select(StateRow))).all()}
        return rules, states

    async def close(self) -> None:
        await self.engine.dispose()


def diff(expected: View, actual: View) -> list[str]:
    out = []
    for rule_id in sorted(set(expected) | set(actual)):
        want, got = expected.get(rule_id), actual.get(rule_id)
        if want != got:
            if want is None or got is None:
                out.append(f"{rule_id}: expected {want}, got {got}")
            else:
                fields = {k: (want[k], got.get(k)) for k in want if want[k] != got.get(k)}
                out.append(f"{rule_id}: {fields}")
    return out


#: The tests' own `DECNET_TTP_NATS_URL` (where the NATS tests find the server) must not
#: turn NATS on in processes: a swarm uses NATS only through `master_args`/`worker_args`.
NO_NATS_FROM_ENV: Final = {"DECNET_TTP_NATS_URL": ""}


@dataclass
class Swarm:
    group: ProcessGroup
    root: Path
    db_url: str
    poll_interval: float
    rules_dir: Path = field(init=False)
    masters: list[Proc] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    truth: Truth = field(init=False)
    #: Options added to every master's and worker's command line (e.g. `--nats URL`).
    master_args: list[str] = field(default_factory=list)
    worker_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rules_dir = self.root / "rules"
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        self.truth = Truth(self.db_url)

    @property
    def master(self) -> Proc:
        return self.masters[0]

    async def cli(self, *args: str, env: Mapping[str, str] | None = None,
                  check: bool = True) -> tuple[int, str, str]:
        return await run_cli(*args, env={"DECNET_TTP_DB_URL": self.db_url, **(env or {})},
                             check=check)

    async def upgrade(self) -> None:
        await self.cli("db", "upgrade", "--db", self.db_url)

    def add_master(self, name: str = "master", *, rules_dir: Path | None = None,
                   env: Mapping[str, str] | None = None, by: str | None = None) -> Proc:
        argv = cli_command("master", "--rules", str(rules_dir or self.rules_dir),
                           "--db", self.db_url, "--by", by or name, *self.master_args)
        proc = self.group.add(name, argv, {**NO_NATS_FROM_ENV, **(env or {})})
        self.masters.append(proc)
        return proc

    async def start_master(self, proc: Proc | None = None, *, wait: bool = True) -> Proc:
        proc = proc or (self.masters[0] if self.masters else self.add_master())
        await proc.start()
        if wait:
            await proc.wait_event("ready")
        return proc

    def add_worker(self, name: str | None = None, *, db_url: str | None = None,
                   poll_interval: float | None = None, listen: bool = True) -> Worker:
        name = name or f"worker{len(self.workers) + 1}"
        interval = self.poll_interval if poll_interval is None else poll_interval
        argv = cli_command("worker", "--db", db_url or self.db_url, "--http", "127.0.0.1:0",
                           "--poll-interval", str(interval), *self.worker_args)
        if not listen:
            argv.append("--no-listen")
        worker = Worker(name, self.group.add(name, argv, NO_NATS_FROM_ENV))
        self.workers.append(worker)
        return worker

    async def start_worker(self, worker: Worker, *, ready: bool = True) -> Worker:
        await worker.proc.start()
        listening = await worker.proc.wait_event("listening")
        if worker.client is not None:
            await worker.client.aclose()
        worker.url = str(listening["url"])
        worker.client = httpx.AsyncClient(base_url=worker.url, timeout=5.0)
        if ready:
            await worker.proc.wait_event("ready")
        return worker

    async def start_workers(self, count: int, *, poll_interval: float | None = None,
                            listen: bool = True, db_url: str | None = None) -> list[Worker]:
        workers = [self.add_worker(poll_interval=poll_interval, listen=listen, db_url=db_url)
                   for _ in range(count)]
        await asyncio.gather(*(self.start_worker(w) for w in workers))
        return workers

    async def wait_converged(self, *, timeout: float = 20.0,
                             workers: Sequence[Worker] | None = None,
                             expected: View | None = None) -> View:
        """Wait until every worker shows the database's truth; the truth it matched.

        With `expected`, the truth itself must also equal it (the model of a script).
        """
        targets = list(workers if workers is not None else self.workers)
        last: dict[str, list[str]] = {}

        async def agreed() -> View | None:
            truth = await self.truth.view()
            if expected is not None and truth != expected:
                last["truth vs expected"] = diff(expected, truth)
                return None
            ok = True
            for worker in targets:
                try:
                    view = await worker.view()
                except httpx.HTTPError as exc:
                    last[worker.name] = [f"unreachable: {exc!r}"]
                    ok = False
                    continue
                problems = diff(truth, view)
                if problems:
                    last[worker.name] = problems
                    ok = False
                else:
                    last.pop(worker.name, None)
            last.pop("truth vs expected", None)
            return truth if ok else None

        try:
            return await poll(agreed, timeout=timeout, interval=0.05,
                              message="every worker to match the database")
        except AssertionError as exc:
            details = "\n".join(f"{name}: {problems[:8]}" for name, problems in last.items())
            raise AssertionError(f"{exc}\n{details}\n{self.group.logs()}") from None

    async def wait_stored(self, rule_id: str, text: str, *, timeout: float = 20.0) -> None:
        """Wait until the database holds exactly `text` as the definition of `rule_id`."""
        async def stored() -> bool:
            rules, _ = await self.truth.rows()
            row = rules.get(rule_id)
            return row is not None and row.yaml_content == text

        await poll(stored, timeout=timeout, interval=0.01,
                   message=f"the master to store {rule_id}")

    async def wait_held(self, rule_id: str, state: str, *, timeout: float = 10.0) -> None:
        """Wait until every worker's engine holds `state` for `rule_id`."""
        async def held() -> bool:
            for worker in self.workers:
                entries = {r["rule_id"]: r for r in await worker.rules()}
                if entries.get(rule_id, {}).get("held_state") != state:
                    return False
            return True

        await poll(held, timeout=timeout, interval=0.02,
                   message=f"every worker to hold {rule_id} {state}")

    async def wait_reverted(self, *, timeout: float = 20.0) -> None:
        """Wait until no expired state is left anywhere: not in the database, and not
        held by any worker's engine (each reverted by a timer, not by a read)."""
        last: list[str] = []

        async def reverted() -> bool:
            last.clear()
            _, states = await self.truth.rows()
            now = datetime.now(UTC)
            last.extend(f"db: {rule_id} still {row.state} (expired)"
                        for rule_id, row in states.items()
                        if row.expires_at is not None and row.expires_at <= now)
            for worker in self.workers:
                last.extend(f"{worker.name}: {r['rule_id']} holds {r['held_state']}"
                            for r in await worker.rules() if r["held_state"] != r["state"])
            return not last

        try:
            await poll(reverted, timeout=timeout, interval=0.05,
                       message="expired states to be reverted everywhere")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last[:10]}") from None

    async def aclose(self) -> None:
        try:
            await self.group.aclose()
        finally:
            for worker in self.workers:
                if worker.client is not None:
                    await worker.client.aclose()
            await self.truth.close()
