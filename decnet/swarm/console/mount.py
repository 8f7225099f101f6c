"""The master's HTTP app: the admin API under `/api/v1/` and the console under `/ui/`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from decnet.swarm.admin.app import create_admin_app
from decnet.swarm.console.app import create_console_app
from decnet.ttp.store.database import DatabaseRuleStore


def create_master_app(store: DatabaseRuleStore) -> Starlette:
    """The admin API with the console beside it (`/` and `/ui` lead to `/ui/`)."""

    async def to_console(request: Request) -> Response:
        return RedirectResponse("/ui/", 307)

    return Starlette(routes=[
        Route("/", to_console, methods=["GET"]),
        Route("/ui", to_console, methods=["GET"]),
        Mount("/ui", create_console_app(store)),
        Mount("/", create_admin_app(store)),
    ])
