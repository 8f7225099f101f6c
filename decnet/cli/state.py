"""`decnet-ttp state get|set|clear|list`: operator state of rules in the database store."""

from __future__ import annotations

import enum
import getpass
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import orjson
import typer
from rich.table import Table
from rich.text import Text

from decnet.cli.common import (
    BadInput,
    cli_errors,
    console,
    db_url,
    err_console,
    run,
    safe_text,
)
from decnet.cli.durations import format_remaining, parse_duration, parse_moment
from decnet.ttp.constants import (
    ENV_DB_URL,
    ENV_NATS_PREFIX,
    ENV_NATS_URL,
    MAX_STATE_BY_CHARS,
    MAX_STATE_REASON_BYTES,
    NATS_DEFAULT_PREFIX,
)
from decnet.ttp.errors import InvalidStateError
from decnet.ttp.store.codec import history_to_dict, scoped_to_dict, state_to_dict
from decnet.ttp.store.factory import database_store
from decnet.vocabulary import (
    HistoryEntry,
    RuleState,
    Scope,
    ScopedState,
    StateName,
    as_utc,
    iso,
    utcnow,
    validate_rule_id,
)

if TYPE_CHECKING:
    from decnet.ttp.store.database import DatabaseRuleStore
    from decnet.ttp.store.database.jetstream import NatsNames

T = TypeVar("T")

app = typer.Typer(help="Operator state of rules: enable, disable, clip, with an optional TTL.",
                  no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", help=f"Database URL [env {ENV_DB_URL}; default sqlite+aiosqlite:///decnet-ttp.db]",
    show_default=False)]
RuleArg = Annotated[str, typer.Argument(help="Rule id, e.g. R0007", show_default=False)]
ScopeOption = Annotated[list[str] | None, typer.Option(
    "--scope", help="Only where the event comes from: decky=ID[,ID…] or sensor=NAME[,NAME…] "
    "(repeatable; decky and sensor together narrow it further)", show_default=False)]
NatsOption = Annotated[str | None, typer.Option(
    "--nats", envvar=ENV_NATS_URL, show_envvar=True,
    help="The deployment's NATS (nats://host:4222): after the commit, send the master's "
    "publisher a commit hint so the change reaches the workers at once (NATS down: the "
    "command still succeeds, the publisher's poll finds the change)", show_default=False)]
NatsPrefixOption = Annotated[str, typer.Option(
    "--nats-prefix", envvar=ENV_NATS_PREFIX, show_envvar=True,
    help="Name prefix of the deployment's NATS subjects (as given to master and worker)")]


class StateChoice(enum.StrEnum):
    enabled = "enabled"
    disabled = "disabled"
    clipped = "clipped"


def _default_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:
        return "unknown"


def _who(by: str | None) -> str:
    """`--by`, else `$USER`; refused (exit 2) when the database column cannot hold it."""
    who = by or _default_user()
    _utf8("--by", who)
    if len(who) > MAX_STATE_BY_CHARS:
        raise BadInput(f"--by is {len(who):,} characters long; at most {MAX_STATE_BY_CHARS}")
    return who


def _utf8(option: str, text: str) -> bytes:
    """`text` as the database will store it; `BadInput` when it is not valid Unicode."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of argv, kept as lone surrogates
        raise BadInput(f"{option} is not valid UTF-8") from None


def _with_store(url: str, action: Callable[..., Awaitable[T]],
                hint: NatsNames | None = None, nats_url: str | None = None) -> T:
    """Run `action(store)` against a database store (errors: see `cli_errors`); with
    `nats_url`, then send the commit hint of the database's head on `hint`'s subject."""
    async def go() -> T:
        store = database_store(url)
        try:
            result = await action(store)
            if nats_url and hint is not None:
                from decnet.ttp.store.database.commithint import send_commit_hint

                await send_commit_hint(nats_url, hint, await store.repo.head())
            return result
        finally:
            await store.stop()

    return run(go())


def _nats_names(nats: str | None, prefix: str) -> NatsNames | None:
    """The deployment's NATS names when `--nats` is given; `BadInput` for a bad prefix."""
    if not nats:
        return None
    from decnet.ttp.store.database.jetstream import NatsNames  # nats-py: with --nats only

    try:
        return NatsNames(prefix)
    except ValueError as exc:
        raise BadInput(f"--nats-prefix: {exc}") from None


def _iso(moment: datetime | None) -> str:
    return iso(moment, "seconds") or ""


def _scope_of(specs: list[str] | None) -> Scope | None:
    return Scope.parse(specs) if specs else None


def _describe(rule_id: str, state: RuleState, scope: Scope | None = None) -> str:
    text = f"{rule_id}: {state.state.value}" if scope is None else \
        f"{rule_id} [{scope.key}]: {state.state.value}"
    if state.confidence_max is not None:
        text += f" (confidence ≤ {state.confidence_max:g})"
    if state.expires_at is not None:
        text += f", until {_iso(state.expires_at)} ({format_remaining(state.expires_at)})"
    if state.reason:
        text += f" — {state.reason}"
    if state.set_by:
        text += f" [set by {state.set_by} at {_iso(state.set_at)}]"
    return safe_text(text)


@app.command()
def get(
    rule: RuleArg,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show the state of one rule (enabled when nothing is set)."""
    with cli_errors():
        rule_id = validate_rule_id(rule)
        state, scoped = _with_store(db_url(db), lambda store: _read_both(store, rule_id))
    if as_json:
        body = {"rule_id": rule_id, **state_to_dict(state),
                "scopes": [scoped_to_dict(item) for item in scoped]}
        console.print_json(orjson.dumps(body).decode(), ensure_ascii=True)
    else:
        console.print(_describe(rule_id, state), highlight=False, markup=False)
        for item in scoped:
            console.print(_describe(rule_id, item.state, item.scope), highlight=False,
                          markup=False)


async def _read_both(store: DatabaseRuleStore,
                     rule_id: str) -> tuple[RuleState, tuple[ScopedState, ...]]:
    return await store.read_state(rule_id), await store.scoped_states(rule_id)


@app.command("set")
def set_state(
    rule: RuleArg,
    state: Annotated[StateChoice, typer.Argument(help="enabled, disabled or clipped",
                                                 show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to other operators)",
                                        show_default=False)],
    by: Annotated[str | None, typer.Option("--by", help="Who sets it [default: $USER]",
                                           show_default=False)] = None,
    for_: Annotated[str | None, typer.Option(
        "--for", help="TTL: 90s, 30m, 4h, 1d, 1h30m; the state reverts after it",
        show_default=False)] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Revert at this ISO 8601 time, e.g. 2026-12-01T00:00Z",
        show_default=False)] = None,
    confidence_max: Annotated[float | None, typer.Option(
        "--confidence-max", help="Ceiling in [0, 1] of a clipped rule's confidence",
        show_default=False)] = None,
    scope: ScopeOption = None,
    db: DbOption = None,
    nats: NatsOption = None,
    nats_prefix: NatsPrefixOption = NATS_DEFAULT_PREFIX,
) -> None:
    """Set a rule's state, e.g. `state set R0007 disabled --for 4h --reason "noisy"`;
    with `--scope decky=decky-03` only for events of that decky."""
    with cli_errors():
        rule_id = validate_rule_id(rule)
        where = _scope_of(scope)
        if where is not None and state is StateChoice.enabled:
            raise BadInput("a scoped state is disabled or clipped; to lift one, use "
                           "`state clear RULE --scope …`")
        wanted = _wanted_state(state, reason, for_, until, confidence_max)
        who = _who(by)
        stored, known = _with_store(db_url(db),
                                    lambda store: _set(store, rule_id, wanted, who, where),
                                    _nats_names(nats, nats_prefix), nats)
    if not known:
        err_console.print(Text(f"warning: no rule {rule_id} is stored yet; the state applies "
                               "when it appears", style="yellow"), highlight=False)
    console.print(_describe(rule_id, stored, where), highlight=False, markup=False)


def _wanted_state(state: StateChoice, reason: str, for_: str | None, until: str | None,
                  confidence_max: float | None) -> RuleState:
    """The state `set` asked for; `BadInput` or `InvalidStateError` when it cannot be."""
    if for_ is not None and until is not None:
        raise BadInput("give --for or --until, not both")
    expires_at = None
    if for_ is not None:
        expires_at = utcnow() + parse_duration(for_)
    elif until is not None:
        expires_at = parse_moment(until)
    if not reason.strip():
        raise BadInput("--reason must say why")
    size = len(_utf8("--reason", reason))
    if size > MAX_STATE_REASON_BYTES:
        raise BadInput(f"--reason is {size:,} bytes long; at most {MAX_STATE_REASON_BYTES:,}")
    try:
        return RuleState(StateName(state.value), confidence_max=confidence_max,
                         expires_at=expires_at, reason=reason)
    except InvalidStateError as exc:
        hint = " (use --confidence-max with clipped)" if state is StateChoice.clipped else ""
        raise BadInput(f"{exc}{hint}") from None


async def _set(store: DatabaseRuleStore, rule_id: str, wanted: RuleState,
               who: str, scope: Scope | None) -> tuple[RuleState, bool]:
    if scope is None:
        await store.set_state(rule_id, wanted, who)
        stored = await store.read_state(rule_id)
    else:
        await store.set_scoped_state(rule_id, scope, wanted, who)
        found = [item.state for item in await store.scoped_states(rule_id)
                 if item.scope == scope]
        stored = found[0] if found else RuleState()
    return stored, await store.rule_exists(rule_id)


@app.command()
def clear(
    rule: RuleArg,
    by: Annotated[str | None, typer.Option("--by", help="Who clears it [default: $USER]",
                                           show_default=False)] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the history)",
                                               show_default=False)] = None,
    scope: ScopeOption = None,
    all_scopes: Annotated[bool, typer.Option(
        "--all-scopes", help="Clear the unscoped state and every scoped one")] = False,
    db: DbOption = None,
    nats: NatsOption = None,
    nats_prefix: NatsPrefixOption = NATS_DEFAULT_PREFIX,
) -> None:
    """Return a rule to the default state (enabled, no TTL): the unscoped state, the one
    of `--scope`, or with `--all-scopes` every state of the rule."""
    with cli_errors():
        rule_id = validate_rule_id(rule)
        who = _who(by)
        where = _scope_of(scope)
        if where is not None and all_scopes:
            raise BadInput("give --scope or --all-scopes, not both")
        if reason is not None and len(_utf8("--reason", reason)) > MAX_STATE_REASON_BYTES:
            raise BadInput(f"--reason is longer than {MAX_STATE_REASON_BYTES:,} bytes")
        cleared = _with_store(db_url(db), lambda store: _clear(store, rule_id, who, reason,
                                                               where, all_scopes),
                              _nats_names(nats, nats_prefix), nats)
    labels = [rule_id] if where is None else []
    labels += [f"{rule_id} [{key}]" for key in cleared if key is not None]
    if not labels:
        labels = [f"{rule_id} [{where.key if where else ''}]: nothing to clear"]
    else:
        labels = [f"{label}: enabled (cleared by {who})" for label in labels]
    for line in labels:
        console.print(safe_text(line), highlight=False, markup=False)


async def _clear(store: DatabaseRuleStore, rule_id: str, who: str, reason: str | None,
                 scope: Scope | None, all_scopes: bool) -> list[str | None]:
    """Clear what was asked; the scope keys cleared (None: the unscoped state)."""
    cleared: list[str | None] = []
    if scope is None:
        if not (await store.read_state(rule_id)).is_default:
            cleared.append(None)
        await store.clear_state(rule_id, who, reason=reason)
    targets = [item.scope for item in await store.scoped_states(rule_id)
               if all_scopes or item.scope == scope]
    for target in targets:
        await store.clear_scoped_state(rule_id, target, who, reason=reason)
        cleared.append(target.key)
    return cleared


@app.command("list")
def list_states(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every rule with a state set, and when it expires."""
    with cli_errors():
        states, scoped = _with_store(db_url(db), _list_all)
    rows: list[tuple[str, str | None, RuleState]] = [
        (rule_id, None, state) for rule_id, state in states.items()]
    rows += [(rule_id, item.scope.key, item.state)
             for rule_id, items in scoped.items() for item in items]
    rows.sort(key=lambda row: (row[0], row[1] or ""))
    if as_json:
        body = [{"rule_id": rule_id, "scope": scope_key, **state_to_dict(s)}
                for rule_id, scope_key, s in rows]
        console.print_json(orjson.dumps(body).decode(), ensure_ascii=True)
        return
    now = utcnow()
    table = Table()
    for column in ("rule", "scope", "state", "ceiling", "expires", "reason", "set by",
                   "set at"):
        table.add_column(column, overflow="fold")
    for rule_id, scope_key, state in rows:
        ceiling = f"{state.confidence_max:g}" if state.confidence_max is not None else ""
        expires = f"{_iso(state.expires_at)} ({format_remaining(state.expires_at, now=now)})" \
            if state.expires_at is not None else "never"
        table.add_row(*(Text(safe_text(cell)) for cell in (
            rule_id, scope_key or "(all)", state.state.value, ceiling, expires,
            state.reason or "", state.set_by or "", _iso(state.set_at))))
    console.print(table)
    console.print(f"{len(rows)} state(s) set", highlight=False)


async def _list_all(store: DatabaseRuleStore) -> tuple[dict[str, RuleState],
                                                       dict[str, tuple[ScopedState, ...]]]:
    return await store.list_states(), await store.list_scoped_states()


def _since(text: str) -> datetime:
    """`--since`: a duration back from now (`24h`, `7d`) or an ISO 8601 time."""
    try:
        return utcnow() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--since {text!r}: expected a duration (24h, 7d) or an ISO 8601 "
                       "time") from None
    return as_utc(moment)


@app.command()
def history(
    rule: Annotated[str | None, typer.Argument(help="Only this rule", show_default=False)] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only changes since: 24h, 7d, or an ISO 8601 time",
        show_default=False)] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every state change (set, clear, expiry), oldest first: who, when, from where, why."""
    with cli_errors():
        rule_id = validate_rule_id(rule) if rule is not None else None
        moment = _since(since) if since is not None else None
        entries: list[HistoryEntry] = _with_store(
            db_url(db), lambda store: store.history(rule_id, since=moment))
    if as_json:
        console.print_json(orjson.dumps([history_to_dict(e) for e in entries]).decode(),
                           ensure_ascii=True)
        return
    table = Table()
    for column in ("at", "rule", "scope", "action", "old", "new", "by", "via", "reason"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(*(Text(safe_text(cell)) for cell in (
            _iso(entry.at), entry.rule_id, entry.scope or "(all)", entry.action.value,
            _short(entry.old), _short(entry.new), entry.by or "", entry.via or "",
            entry.reason or "")))
    console.print(table)
    console.print(f"{len(entries)} change(s)", highlight=False)


def _short(state: RuleState | None) -> str:
    if state is None:
        return "enabled"
    text = state.state.value
    if state.confidence_max is not None:
        text += f" ≤{state.confidence_max:g}"
    if state.expires_at is not None:
        text += f" until {_iso(state.expires_at)}"
    return text
