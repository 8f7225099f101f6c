"""A scripted, seeded mix of operations on a swarm, and the truth it must end in.

File operations act on the master's rules directory (added, edited with and
without a version bump, renamed, deleted, broken by a malformed save and fixed
again); state operations go through the `decnet-ttp state` CLI and through a
store in this process ("another host"). The `Model` tracks what the database
must hold once everything has propagated.

Rules are split so the expected result never depends on a race: *stable* rules
exist from the start and are only ever edited (they carry the operator states);
*volatile* rules are added, edited, renamed, broken and deleted, and a deleted
rule id is never used again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from unittest.mock import ANY

TECHNIQUES = (("TA0007", "T1082"), ("TA0002", "T1059"), ("TA0007", "T1083"),
              ("TA0005", "T1070"), ("TA0003", "T1053"))

#: Stable rules whose states the CLI writes (the others: the store in the test process).
CLI_RULES = 4

OpKind = Literal["add", "edit", "touch", "rename", "delete", "break", "set", "clear", "expire"]


def rule_yaml(rule_id: str, version: int, flavour: int) -> str:
    tactic, technique = TECHNIQUES[flavour % len(TECHNIQUES)]
    confidence = 0.3 + (flavour % 7) / 10
    return (
        f"rule_id: {rule_id}\n"
        f"rule_version: {version}\n"
        f"name: swarm_{rule_id.lower()}\n"
        f"description: swarm test rule {rule_id}, flavour {flavour}\n"
        "applies_to: [command]\n"
        "match:\n"
        f"  pattern: '\\bswarm{rule_id.lower()}x{flavour}\\b'\n"
        "emits:\n"
        f"  - {{tactic: {tactic}, technique_id: {technique}, confidence: {confidence:.1f}}}\n"
        "evidence_fields: [command_text]\n"
    )


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StateOp:
    state: str                       # enabled (clear) / disabled / clipped
    confidence_max: float | None = None
    ttl_seconds: float | None = None
    reason: str | None = None
    by: str = "swarm-test"


@dataclass(frozen=True)
class Op:
    kind: OpKind
    rule_id: str
    text: str | None = None          # file content for add/edit/touch/rename
    new_rule_id: str | None = None   # rename
    state: StateOp | None = None
    via_cli: bool = False
    atomic: bool = True              # write-then-rename vs. in-place write


@dataclass
class ExpectedState:
    op: StateOp
    expires: bool


@dataclass
class Model:
    """What the database must hold after the operations, once expiries have passed."""

    rules: dict[str, str] = field(default_factory=dict)            # rule_id -> last good YAML
    versions: dict[str, int] = field(default_factory=dict)
    states: dict[str, ExpectedState] = field(default_factory=dict)

    def expected(self) -> dict[str, dict[str, Any]]:
        """rule_id -> the fields of `GET /rules` the model can predict."""
        out: dict[str, dict[str, Any]] = {}
        for rule_id, text in sorted(self.rules.items()):
            entry: dict[str, Any] = {"rule_version": self.versions[rule_id],
                                     "yaml_sha256": sha256(text),
                                     "state": "enabled", "confidence_max": None,
                                     "expires_at": None, "reason": None, "set_by": None}
            expected = self.states.get(rule_id)
            if expected is not None and not expected.expires and expected.op.state != "enabled":
                entry.update(state=expected.op.state, confidence_max=expected.op.confidence_max,
                             reason=expected.op.reason, set_by=expected.op.by,
                             expires_at=None if expected.op.ttl_seconds is None else ANY)
            out[rule_id] = entry
        return out


def initial_rules(stable: int, volatile: int) -> dict[str, str]:
    rules = {f"S{i:04d}": rule_yaml(f"S{i:04d}", 1, i) for i in range(stable)}
    rules.update({f"V{i:04d}": rule_yaml(f"V{i:04d}", 1, i) for i in range(volatile)})
    return rules


def plan(seed: int, n_ops: int, initial: dict[str, str], *, cli_share: float = 0.12,
         state_share: float = 0.3, short_ttl: float = 1.5) -> tuple[list[Op], Model]:
    """`n_ops` operations and the model of their result."""
    rng = random.Random(seed)
    model = Model(rules=dict(initial), versions={r: 1 for r in initial})
    stable = sorted(r for r in initial if r.startswith("S"))
    volatile = sorted(r for r in initial if r.startswith("V"))
    broken: set[str] = set()
    next_id = len(volatile)
    flavour = 100
    ops: list[Op] = []

    def new_id() -> str:
        nonlocal next_id
        next_id += 1
        return f"V{next_id:04d}"

    while len(ops) < n_ops:
        flavour += 1
        roll = rng.random()
        if roll < state_share:
            # The CLI writes the first stable rules, the local store the others: each
            # rule has one writer, so per-rule order needs no cross-writer waits.
            via_cli = rng.random() < cli_share
            rule_id = rng.choice(stable[:CLI_RULES] if via_cli else stable[CLI_RULES:])
            pick = rng.random()
            if pick < 0.3:
                op = StateOp("disabled", reason=f"noisy #{len(ops)}")
            elif pick < 0.55:
                op = StateOp("clipped", confidence_max=rng.choice((0.1, 0.25, 0.5)),
                             reason=f"clip #{len(ops)}")
            elif pick < 0.75:
                op = StateOp("disabled", ttl_seconds=short_ttl, reason=f"brief #{len(ops)}")
            elif pick < 0.85:
                op = StateOp("clipped", confidence_max=0.2, ttl_seconds=3600,
                             reason=f"long #{len(ops)}")
            else:
                op = StateOp("enabled")
            kind: OpKind = "clear" if op.state == "enabled" else (
                "expire" if op.ttl_seconds is not None and op.ttl_seconds < 60 else "set")
            ops.append(Op(kind, rule_id, state=op, via_cli=via_cli))
            model.states[rule_id] = ExpectedState(op, expires=kind == "expire")
            continue
        roll = rng.random()
        live_volatile = sorted(r for r in model.rules if r.startswith("V"))
        if roll < 0.2 or len(live_volatile) < 3:
            rule_id = new_id()
            text = rule_yaml(rule_id, 1, flavour)
            ops.append(Op("add", rule_id, text=text, atomic=rng.random() < 0.7))
            model.rules[rule_id], model.versions[rule_id] = text, 1
        elif roll < 0.55:
            rule_id = rng.choice(stable + live_volatile)
            version = model.versions[rule_id] + 1
            text = rule_yaml(rule_id, version, flavour)
            ops.append(Op("edit", rule_id, text=text, atomic=rng.random() < 0.7))
            model.rules[rule_id], model.versions[rule_id] = text, version
            broken.discard(rule_id)
        elif roll < 0.65:  # a new text, same version (a description fix)
            rule_id = rng.choice(stable + live_volatile)
            text = rule_yaml(rule_id, model.versions[rule_id], flavour)
            ops.append(Op("touch", rule_id, text=text))
            model.rules[rule_id] = text
            broken.discard(rule_id)
        elif roll < 0.75:
            rule_id = rng.choice(live_volatile)
            target = new_id()
            text = rule_yaml(target, 1, flavour)
            ops.append(Op("rename", rule_id, text=text, new_rule_id=target))
            del model.rules[rule_id], model.versions[rule_id]
            broken.discard(rule_id)
            model.rules[target], model.versions[target] = text, 1
        elif roll < 0.9:
            rule_id = rng.choice(live_volatile)
            ops.append(Op("delete", rule_id))
            del model.rules[rule_id], model.versions[rule_id]
            broken.discard(rule_id)
        else:
            candidates = [r for r in live_volatile if r not in broken]
            if not candidates:
                continue
            rule_id = rng.choice(candidates)
            ops.append(Op("break", rule_id, text=f"rule_id: {rule_id}\nrule_version: [\n"))
            broken.add(rule_id)  # the last good version stays
    return ops, model


def write_rule(directory: Path, rule_id: str, text: str, *, atomic: bool = True) -> None:
    path = directory / f"{rule_id}.yaml"
    if atomic:
        tmp = directory / f".{rule_id}.yaml.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    else:
        path.write_text(text, encoding="utf-8")


def seed_directory(directory: Path, rules: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rule_id, text in rules.items():
        write_rule(directory, rule_id, text)


StateWriter = Callable[[str, StateOp], Awaitable[None]]
#: Waits until the database holds exactly this text for the rule.
Settle = Callable[[str, str], Awaitable[None]]


async def execute(ops: Sequence[Op], directory: Path, *, cli: StateWriter,
                  local: StateWriter, settle: Settle | None = None, seed: int = 0,
                  max_gap: float = 0.01, cli_concurrency: int = 3) -> None:
    """Apply `ops` in order, pacing file operations by small random gaps.

    CLI state writes run in the background (a few at a time) but stay ordered per
    rule, so the last write of each rule is the model's. Before a malformed save,
    `settle` waits for the master to have stored the rule's last good text: a save
    overwritten within milliseconds may never be seen by anybody, and then "the
    last good version" is an older one.
    """
    current: dict[str, str] = {}
    rng = random.Random(seed)
    slots = asyncio.Semaphore(cli_concurrency)
    last_cli: dict[str, asyncio.Task[None]] = {}
    background: list[asyncio.Task[None]] = []

    async def ordered(rule_id: str, op: StateOp, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await before
        async with slots:
            await cli(rule_id, op)

    for op in ops:
        if op.kind in ("set", "clear", "expire"):
            assert op.state is not None
            before = last_cli.get(op.rule_id)
            if op.via_cli:
                task = asyncio.get_running_loop().create_task(
                    ordered(op.rule_id, op.state, before))
                last_cli[op.rule_id] = task
                background.append(task)
            else:
                if before is not None:  # keep per-rule order across both writers
                    await before
                await local(op.rule_id, op.state)
            continue
        if op.kind in ("add", "edit", "touch"):
            assert op.text is not None
            write_rule(directory, op.rule_id, op.text, atomic=op.atomic)
            current[op.rule_id] = op.text
        elif op.kind == "rename":
            assert op.text is not None and op.new_rule_id is not None
            write_rule(directory, op.new_rule_id, op.text)
            current[op.new_rule_id] = op.text
            (directory / f"{op.rule_id}.yaml").unlink()
        elif op.kind == "delete":
            (directory / f"{op.rule_id}.yaml").unlink()
        elif op.kind == "break":
            assert op.text is not None
            if settle is not None and op.rule_id in current:
                await settle(op.rule_id, current[op.rule_id])
            write_rule(directory, op.rule_id, op.text)
        if max_gap > 0:
            await asyncio.sleep(rng.uniform(0, max_gap))  # pacing, not waiting
    await asyncio.gather(*background)
