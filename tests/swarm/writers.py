"""The two ways the tests change operator state: the CLI (a process) and a store here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from decnet.ttp.store.base import RuleState, StateName, utcnow
from decnet.ttp.store.impl.database import DatabaseRuleStore
from tests.swarm.scenario import StateOp
from tests.swarm.swarm import Swarm


def state_args(rule_id: str, op: StateOp) -> list[str]:
    if op.state == "enabled":
        return ["state", "clear", rule_id, "--by", op.by]
    args = ["state", "set", rule_id, op.state, "--reason", op.reason or "swarm test",
            "--by", op.by]
    if op.confidence_max is not None:
        args += ["--confidence-max", str(op.confidence_max)]
    if op.ttl_seconds is not None:
        args += ["--for", f"{op.ttl_seconds}s"]
    return args


class CliWriter:
    def __init__(self, swarm: Swarm, env: Mapping[str, str] | None = None) -> None:
        self.swarm = swarm
        self.env = dict(env or {})
        self.calls = 0

    async def __call__(self, rule_id: str, op: StateOp) -> None:
        self.calls += 1
        await self.swarm.cli(*state_args(rule_id, op), "--db", self.swarm.db_url, env=self.env)


class LocalWriter:
    """A `DatabaseRuleStore` in the test process: an operator tool on another host."""

    def __init__(self, db_url: str) -> None:
        self.store = DatabaseRuleStore(db_url)
        self.calls = 0

    async def __aenter__(self) -> LocalWriter:
        await self.store.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.store.stop()

    async def __call__(self, rule_id: str, op: StateOp) -> None:
        self.calls += 1
        if op.state == "enabled":
            await self.store.clear_state(rule_id, op.by)
            return
        expires_at = None if op.ttl_seconds is None else \
            utcnow() + timedelta(seconds=op.ttl_seconds)
        state = RuleState(StateName(op.state), confidence_max=op.confidence_max,
                          expires_at=expires_at, reason=op.reason)
        await self.store.set_state(rule_id, state, op.by)
