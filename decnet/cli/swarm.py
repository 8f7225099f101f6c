"""`decnet-ttp master` and `decnet-ttp worker`: the swarm roles."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from decnet.cli.common import (
    EXIT_INPUT,
    SafeFormatter,
    cli_errors,
    db_url,
    fail,
    quiet_libraries,
    rules_dir,
    run,
    setup_logging,
)
from decnet.ttp.constants import (
    BODY_TIMEOUT,
    DEFAULT_WORKER_HTTP,
    ENV_DB_URL,
    ENV_HTTP_PREFIX,
    ENV_NATS_PREFIX,
    ENV_NATS_URL,
    ENV_RULES_DIR,
    FLEET_REPORT_INTERVAL,
    HEADER_TIMEOUT,
    KEEP_ALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_EVENT_BODY_BYTES,
    MAX_EVENTS_PER_REQUEST,
    MAX_PENDING_REQUESTS,
    MAX_RESPONSE_BYTES,
    MAX_RESPONSE_TAGS,
    NATS_DEFAULT_PREFIX,
    NATS_SAFETY_POLL_INTERVAL,
    TAIL_POLL_INTERVAL,
    WRITE_TIMEOUT,
)
from decnet.ttp.errors import ListenError

RulesOption = Annotated[Path | None, typer.Option(
    "--rules", envvar=ENV_RULES_DIR, show_envvar=True, file_okay=False,
    help="Rules directory (default ./rules/ttp).")]
DbOption = Annotated[str | None, typer.Option(
    "--db", envvar=ENV_DB_URL, show_envvar=True,
    help="Database URL, e.g. postgresql+asyncpg://decnet@db-host/decnet.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
NatsOption = Annotated[str | None, typer.Option(
    "--nats", envvar=ENV_NATS_URL, show_envvar=True,
    help="NATS server with JetStream (nats://host:4222): changes fan out through it.")]
NatsPrefixOption = Annotated[str, typer.Option(
    "--nats-prefix", envvar=ENV_NATS_PREFIX, show_envvar=True,
    help="Name prefix of every NATS stream, bucket and subject of this deployment.")]


def _limit(flag: str, env: str, *, min: float, help: str) -> Any:
    """An option of the worker's HTTP limits, also read from `DECNET_TTP_HTTP_<env>`."""
    return typer.Option(flag, envvar=ENV_HTTP_PREFIX + env, show_envvar=True, min=min,
                        help=help)


def daemon_logging(verbose: bool) -> None:
    """Rich logs on a terminal; plain timestamped lines otherwise (journald, files)."""
    verbose = verbose or logging.getLogger().level == logging.DEBUG
    if sys.stderr.isatty():
        setup_logging(verbose)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        handlers=[handler], force=True)
    quiet_libraries(verbose)


def master(
    rules: RulesOption = None,
    db: DbOption = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Name recorded as updated_by on every row (default master@HOSTNAME).")
    ] = None,
    http: Annotated[str | None, typer.Option(
        "--http", help="HOST:PORT of the admin API (/api/v1/, bearer tokens: decnet-ttp "
                       "token create); off by default.", show_default=False)
    ] = None,
    nats: NatsOption = None,
    nats_prefix: NatsPrefixOption = NATS_DEFAULT_PREFIX,
    publish_poll: Annotated[float | None, typer.Option(
        "--nats-publish-poll", min=0.001,
        help="With --nats: seconds between the publisher's reads of the revision row "
             "[default: 1 where NOTIFY, a file watch or writers' commit hints wake it; "
             "0.02 on MariaDB until a hint arrives]", show_default=False)] = None,
    verbose: VerboseOption = False,
) -> None:
    """Project a rules directory into the database, then every edit as it is saved.

    With --nats, the master holding the lease also publishes every committed change
    to the JetStream change stream the workers follow."""
    from decnet.swarm.master import default_updated_by, main_async  # `--help` stays fast
    from decnet.swarm.process import parse_host_port

    daemon_logging(verbose)
    admin_http = None
    if http is not None:
        try:
            admin_http = parse_host_port(http)
        except ValueError as exc:
            fail(f"--http: {exc}", EXIT_INPUT)
    check_prefix(nats_prefix)
    with cli_errors("--db"):
        try:
            code = run(main_async(rules_dir(rules), db_url(db), by or default_updated_by(),
                                  admin_http=admin_http, nats_url=nats or None,
                                  nats_prefix=nats_prefix, publish_poll=publish_poll))
        except ListenError as exc:
            fail(str(exc), EXIT_INPUT)
    raise typer.Exit(code)


def worker(
    db: DbOption = None,
    http: Annotated[str, typer.Option(
        "--http", help="HOST:PORT the HTTP API listens on (port 0: any free port).")
    ] = DEFAULT_WORKER_HTTP,
    poll_interval: Annotated[float, typer.Option(
        "--poll-interval", min=0.01,
        help="Seconds between polls of the database (without NATS, or while it is away).")
    ] = TAIL_POLL_INTERVAL,
    nats: NatsOption = None,
    nats_prefix: NatsPrefixOption = NATS_DEFAULT_PREFIX,
    safety_poll: Annotated[float, typer.Option(
        "--nats-safety-poll", min=0.01,
        help="With --nats: seconds between polls of the database while NATS flows "
             "but no head beacon from the master vouches for this worker.")
    ] = NATS_SAFETY_POLL_INTERVAL,
    report_interval: Annotated[float, typer.Option(
        "--report-interval", min=0.01,
        help="With --nats: seconds between this worker's fleet reports.")
    ] = FLEET_REPORT_INTERVAL,
    worker_id: Annotated[str | None, typer.Option(
        "--worker-id", help="Name in fleet reports (default HOSTNAME-PORT).")
    ] = None,
    listen: Annotated[bool, typer.Option(
        "--listen/--no-listen",
        help="On PostgreSQL, wake on LISTEN/NOTIFY as well as polling (--no-listen behind "
             "a pooler in transaction mode).")
    ] = True,
    max_body: Annotated[int, _limit(
        "--max-body", "MAX_BODY", min=1024, help="Largest POST /events body, in bytes.")
    ] = MAX_EVENT_BODY_BYTES,
    max_events: Annotated[int, _limit(
        "--max-events", "MAX_EVENTS", min=1, help="Most events in one POST /events.")
    ] = MAX_EVENTS_PER_REQUEST,
    max_response_bytes: Annotated[int, _limit(
        "--max-response-bytes", "MAX_RESPONSE_BYTES", min=1024,
        help="Most bytes of tags in one response; past it tags are omitted (207).")
    ] = MAX_RESPONSE_BYTES,
    max_response_tags: Annotated[int, _limit(
        "--max-response-tags", "MAX_RESPONSE_TAGS", min=1,
        help="Most tags in one response; past it tags are omitted (207).")
    ] = MAX_RESPONSE_TAGS,
    max_pending: Annotated[int, _limit(
        "--max-pending", "MAX_PENDING", min=1,
        help="POST /events requests in progress at once; one more gets 503 + Retry-After.")
    ] = MAX_PENDING_REQUESTS,
    max_connections: Annotated[int, _limit(
        "--max-connections", "MAX_CONNECTIONS", min=1,
        help="Open connections at most (also kept below the open-file limit).")
    ] = MAX_CONNECTIONS,
    header_timeout: Annotated[float, _limit(
        "--header-timeout", "HEADER_TIMEOUT", min=0.01,
        help="Seconds to send a request's headers.")
    ] = HEADER_TIMEOUT,
    body_timeout: Annotated[float, _limit(
        "--body-timeout", "BODY_TIMEOUT", min=0.01, help="Seconds to send a request's body.")
    ] = BODY_TIMEOUT,
    keep_alive_timeout: Annotated[float, _limit(
        "--keep-alive-timeout", "KEEP_ALIVE_TIMEOUT", min=0.01,
        help="Seconds an idle connection stays open.")
    ] = KEEP_ALIVE_TIMEOUT,
    write_timeout: Annotated[float, _limit(
        "--write-timeout", "WRITE_TIMEOUT", min=0.01,
        help="Seconds a response waits for a client that stopped reading.")
    ] = WRITE_TIMEOUT,
    verbose: VerboseOption = False,
) -> None:
    """Tail the database, keep an engine in step and serve it over HTTP."""
    from decnet.swarm.http.limits import HttpLimits
    from decnet.swarm.process import parse_host_port  # `--help` stays fast (no uvicorn)
    from decnet.swarm.worker import NatsOptions, main_async

    daemon_logging(verbose)
    check_prefix(nats_prefix)
    nats_options = None if not nats else NatsOptions(
        nats, nats_prefix, safety_poll=safety_poll, report_interval=report_interval,
        worker_id=worker_id)
    try:
        host, port = parse_host_port(http)
    except ValueError as exc:
        fail(f"--http: {exc}", EXIT_INPUT)
    with cli_errors("--db"):
        limits = HttpLimits(
            max_body_bytes=max_body, max_events=max_events,
            max_response_bytes=max_response_bytes, max_response_tags=max_response_tags,
            max_pending=max_pending, max_connections=max_connections,
            header_timeout=header_timeout, body_timeout=body_timeout,
            keep_alive_timeout=keep_alive_timeout, write_timeout=write_timeout)
        try:
            code = run(main_async(db_url(db), host, port, poll_interval, listen=listen,
                                  limits=limits, nats=nats_options))
        except ListenError as exc:
            fail(str(exc), EXIT_INPUT)
    raise typer.Exit(code)


def check_prefix(prefix: str) -> None:
    """Exit 2 with one line when `--nats-prefix` cannot name a stream."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", prefix):
        fail(f"--nats-prefix {prefix!r}: use 1-64 of A-Z a-z 0-9 _ -", EXIT_INPUT)


def register(app: typer.Typer) -> None:
    """Add `master` and `worker` to the root command."""
    app.command("master")(master)
    app.command("worker")(worker)

