"""The master's HTTP app: the admin API under `/api/v1/` and the console under `/ui/`."""

from __future__ import annotations

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from decnet.swarm.admin.app import create_admin_app
from decnet.swarm.console.app import create_console_app
from decnet.swarm.fleet import FleetSource, FleetStatus, fleet_metrics
from decnet.swarm.kv_mirror import MirrorUnavailable
from decnet.ttp.store.database import DatabaseRuleStore


def create_master_app(store: DatabaseRuleStore, fleet: FleetSource | None = None, *,
                      freeze_gc: bool = False) -> Starlette:
    """The admin API with the console beside it (`/` and `/ui` lead to `/ui/`), and
    `/metrics`: the database head revision and, with `fleet`, the workers' status.
    `freeze_gc`: see `create_console_app` (the master process sets it)."""

    async def metrics(request: Request) -> Response:
        head = await store.repo.head_revision()
        if fleet is None:
            status = FleetStatus(head, [])
        else:
            try:
                status = await fleet.status(head)
            except MirrorUnavailable as exc:  # NATS away: the head still scrapes
                return Response(f"# fleet reports unavailable: {exc}\n"
                                + fleet_metrics(FleetStatus(head, [])),
                                media_type=CONTENT_TYPE_LATEST)
        return Response(fleet_metrics(status), media_type=CONTENT_TYPE_LATEST)

    async def to_console(request: Request) -> Response:
        return RedirectResponse("/ui/", 307)

    return Starlette(routes=[
        Route("/", to_console, methods=["GET"]),
        Route("/ui", to_console, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("/ui", create_console_app(store, fleet, freeze_gc=freeze_gc)),
        Mount("/", create_admin_app(store)),
    ])
