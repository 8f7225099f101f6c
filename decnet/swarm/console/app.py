"""The console's Starlette app, mounted at `/ui` beside the admin API.

Pages are rendered on the server with Jinja2 (autoescaping on for every template: rule
text, reasons and evidence are untrusted). A signed-in browser holds only a random session
id (`HttpOnly`, `SameSite=Strict`, `Secure` over https); every form carries the session's
CSRF token (`csrf_token`, or the `X-CSRF-Token` header for scripted calls). Writes go
through the same store calls and checks as the admin API and need an admin token: a viewer
sees no form and gets a 403 for a hand-made request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from decnet.swarm.admin.requests import BadRequest, parse_scope, parse_state_request
from decnet.swarm.console.fleet import fleet_rows
from decnet.swarm.console.hits import FleetHitsView, period_of
from decnet.swarm.console.rules_view import HeapFreezer, RulesCache, RulesView
from decnet.swarm.console.sessions import Session, Sessions
from decnet.swarm.console.views import history_filtered, rule_table, state_view, technique_view
from decnet.swarm.fleet import FleetSource
from decnet.swarm.kv_mirror import MirrorUnavailable
from decnet.ttp.constants import (
    CONSOLE_EXPIRING_SOON,
    CONSOLE_MAX_ROWS,
    MAX_ADMIN_BODY_BYTES,
    SUB_TECHNIQUE_ID_RE,
    TACTIC_ID_RE,
    TECHNIQUE_ID_RE,
)
from decnet.ttp.coverage import layer_from_counts
from decnet.ttp.errors import InvalidRuleId, InvalidScopeError, InvalidStateError, StoreError
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.sql.tokens import TokenTable
from decnet.vocabulary import as_utc, validate_rule_id

log = logging.getLogger(__name__)

COOKIE = "dttp_console"
STATIC = Path(__file__).with_name("static")
#: Sent with every console response: no script, style or frame from anywhere but here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Page = Callable[[Request, Session], Awaitable[Response]]


class Forbidden(Exception):
    """A write by a viewer, or a form without its CSRF token (a 403)."""


def templates() -> Environment:
    env = Environment(loader=PackageLoader("decnet.swarm.console", "templates"),
                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["iso"] = lambda t: t.isoformat(timespec="seconds") if t else ""
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["minute"] = lambda m: datetime.fromtimestamp(m * 60, UTC).strftime("%H:%M")
    env.filters["at"] = lambda t: datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
    # plain text, escaped like any other (Jinja's `tojson` marks its output safe)
    env.filters["json"] = lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2,
                                                 default=str).decode()
    return env


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form body (at most `MAX_ADMIN_BODY_BYTES`), last value of each field."""
    if request.headers.get("content-type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        raise BadRequest("expected a form (application/x-www-form-urlencoded)")
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ADMIN_BODY_BYTES:
            raise BadRequest(f"the form is larger than {MAX_ADMIN_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        pairs = parse_qsl(b"".join(chunks).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid") from None
    return dict(pairs)


def create_console_app(store: DatabaseRuleStore, fleet: FleetSource | None = None, *,
                       freeze_gc: bool = False) -> Starlette:
    """The console over `store`; mount it at `/ui`. `fleet`: where workers report;
    `freeze_gc`: keep each new view of the rules out of full garbage collections (a
    process-wide setting, for the master's process; see `HeapFreezer`)."""
    env = templates()
    sessions = Sessions()
    counts = FleetHitsView(fleet)
    fleet_hits = counts.get
    tokens = TokenTable(store.repo)
    cache = RulesCache(store, freezer=HeapFreezer() if freeze_gc else None)

    def render(request: Request, session: Session | None, name: str, status: int = 200,
               **context: Any) -> Response:
        html = env.get_template(name).render(
            session=session, path=request.url.path, now=store.clock(), **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def cookie(request: Request, response: Response, session: Session) -> Response:
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/ui")
        return response

    def to_login(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/login", 303,
                                headers=SECURITY_HEADERS)

    async def holder_valid(session: Session) -> bool:
        """The session's token still exists, unrevoked and unexpired."""
        now = store.clock()
        for info in await tokens.list_tokens():
            if info.name == session.name:
                return info.is_valid(now)
        return False

    def page(handler: Page, *, write: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = sessions.get(request.cookies.get(COOKIE))
            try:
                if session is None or not session.signed_in:
                    return to_login(request)
                if not await holder_valid(session):
                    sessions.end_all_of(session.name or "")
                    return to_login(request)
                if request.method == "POST":
                    request.state.form = await form_fields(request)
                    offered = request.headers.get("x-csrf-token") or \
                        request.state.form.get("csrf_token")
                    if not session.csrf_ok(offered):
                        raise Forbidden("the form has expired; reload the page")
                    if write and not session.is_admin:
                        raise Forbidden("this token may read only (role viewer)")
                return await handler(request, session)
            except Forbidden as exc:
                return render(request, session, "error.html", 403, message=str(exc))
            except (BadRequest, InvalidRuleId, InvalidScopeError, InvalidStateError) as exc:
                return render(request, session, "error.html", 422, message=str(exc))
            except StoreError as exc:
                log.warning("console: the rule database failed: %s", exc)
                return render(request, session, "error.html", 503,
                              message="the rule database is unavailable; try again shortly")

        return endpoint

    async def login_page(request: Request) -> Response:
        session = sessions.get(request.cookies.get(COOKIE))
        if session is not None and session.signed_in:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/", 303,
                                    headers=SECURITY_HEADERS)
        session = session or sessions.new()
        return cookie(request, render(request, session, "login.html"), session)

    async def login(request: Request) -> Response:
        session = sessions.get(request.cookies.get(COOKIE))
        try:
            fields = await form_fields(request)
        except BadRequest as exc:
            return render(request, session, "error.html", 422, message=str(exc))
        if session is None or not session.csrf_ok(fields.get("csrf_token")):
            session = session or sessions.new()
            return cookie(request, render(request, session, "login.html", 403,
                                          error="the form has expired; sign in again"), session)
        try:
            holder = await tokens.find(fields.get("token", "").strip())
        except StoreError:
            return render(request, session, "login.html", 503,
                          error="the rule database is unavailable; try again shortly")
        if holder is None:
            return render(request, session, "login.html", 401,
                          error="unknown, expired or revoked token")
        sessions.end(session.id)
        signed = sessions.new(holder.name, holder.role)
        log.info("console: %s signed in (%s)", holder.name, holder.role)
        return cookie(request, RedirectResponse(
            f"{request.scope.get('root_path', '')}/", 303, headers=SECURITY_HEADERS), signed)

    async def logout(request: Request, session: Session) -> Response:
        sessions.end(session.id)
        response = to_login(request)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    async def overview(request: Request, session: Session) -> Response:
        view = await cache.current()
        head = view.head.revision
        try:
            workers, fleet_error = await fleet_rows(fleet, head), None
        except MirrorUnavailable as exc:
            workers, fleet_error = [], str(exc)
        return render(request, session, "overview.html",
                      head=head, rule_count=len(view.rules),
                      silences=view.expiring(store.clock(), CONSOLE_EXPIRING_SOON),
                      fleet=workers, fleet_wired=fleet is not None, fleet_error=fleet_error,
                      hits=await fleet_hits())

    async def rules_page(request: Request, session: Session) -> Response:
        view = await cache.current()
        table = rule_table(view.rules, dict(request.query_params), store.clock(),
                           await fleet_hits(), kinds=view.kinds)
        return render(request, session, "rules.html", table=table)

    async def find_rule(rule_id: str) -> tuple[CompiledRule | None, RulesView]:
        view = await cache.current()
        return view.by_id.get(rule_id), view

    async def rule_page(request: Request, session: Session, *, status: int = 200,
                        error: str | None = None, notice: str | None = None) -> Response:
        rule_id = validate_rule_id(request.path_params["rule_id"])
        rule, view = await find_rule(rule_id)
        if rule is None:
            return render(request, session, "error.html", 404, message=f"no rule {rule_id}")
        rule = await store.with_source(rule)  # its YAML, shown and tested here
        report = view.test_report(rule)
        now = store.clock()
        hits = await fleet_hits()
        return render(request, session, "rule.html", status, rule=rule,
                      hits=None if hits is None else hits.rule(rule_id),
                      state=state_view(rule.state.effective(now)),
                      scopes=[state_view(s.state, s.scope.key) for s in rule.scoped
                              if not s.state.is_expired(now)],
                      report=report, history=list(reversed(await store.repo.read_history(
                          rule_id, limit=CONSOLE_MAX_ROWS))),
                      error=error, notice=notice, form=getattr(request.state, "form", {}))

    async def rule_get(request: Request, session: Session) -> Response:
        return await rule_page(request, session)

    async def set_state(request: Request, session: Session) -> Response:
        rule_id = validate_rule_id(request.path_params["rule_id"])
        fields: dict[str, str] = getattr(request.state, "form", {})
        try:
            body: dict[str, Any] = {"state": fields.get("state"),
                                    "reason": fields.get("reason", "")}
            if fields.get("state") == "clipped":
                try:
                    body["confidence_max"] = float(fields.get("confidence_max", ""))
                except ValueError:
                    raise BadRequest("confidence_max: expected a number in [0, 1]") from None
            if fields.get("for", "").strip():
                body["for"] = fields["for"].strip()
            parts = [f"{dim}={fields[dim].strip()}" for dim in ("decky", "sensor")
                     if fields.get(dim, "").strip()]
            if parts:
                body["scope"] = ";".join(parts)
            wanted = parse_state_request(body, store.clock())
            rule, _ = await find_rule(rule_id)
            if rule is None:
                raise BadRequest(f"no rule {rule_id}")
            if wanted.scope is None:
                await store.set_state(rule_id, wanted.state, session.name or "",
                                      via=session.name)
            else:
                await store.set_scoped_state(rule_id, wanted.scope, wanted.state,
                                             session.name or "", via=session.name)
        except (BadRequest, InvalidScopeError, InvalidStateError) as exc:
            return await rule_page(request, session, status=422, error=str(exc))
        return RedirectResponse(f"{request.scope.get('root_path', '')}/rules/{rule_id}", 303,
                                headers=SECURITY_HEADERS)

    async def clear_state(request: Request, session: Session) -> Response:
        rule_id = validate_rule_id(request.path_params["rule_id"])
        fields: dict[str, str] = getattr(request.state, "form", {})
        reason = fields.get("reason", "").strip() or None
        try:
            scope = parse_scope(fields.get("scope") or None)
            if scope is None:
                await store.clear_state(rule_id, session.name or "", reason=reason,
                                        via=session.name)
            else:
                await store.clear_scoped_state(rule_id, scope, session.name or "",
                                               reason=reason, via=session.name)
        except (BadRequest, InvalidScopeError) as exc:
            return await rule_page(request, session, status=422, error=str(exc))
        return RedirectResponse(f"{request.scope.get('root_path', '')}/rules/{rule_id}", 303,
                                headers=SECURITY_HEADERS)

    async def history_page(request: Request, session: Session) -> Response:
        params = request.query_params
        rule_id = params.get("rule_id", "").strip() or None
        if rule_id is not None:
            validate_rule_id(rule_id)
        since = _moment(params.get("since"), "since")
        until = _moment(params.get("until"), "until")
        person = params.get("by", "").strip() or None
        entries = await store.repo.read_history(rule_id, since=since, until=until, by=person,
                                                limit=CONSOLE_MAX_ROWS)  # the page's rows
        return render(request, session, "history.html",
                      entries=history_filtered(entries, person=person, until=until),
                      filters={"rule_id": rule_id or "", "by": person or "",
                               "since": params.get("since", ""),
                               "until": params.get("until", "")})

    async def coverage_page(request: Request, session: Session) -> Response:
        period = period_of(request.query_params.get("period"))
        shade = "observed" if request.query_params.get("shade") == "observed" else "covered"
        hits = await fleet_hits()
        observed = None if hits is None else hits.observed(period)
        columns = (await cache.current()).heatmap(observed, shade)
        return render(request, session, "coverage.html", columns=columns,
                      covered=sum(1 for c in columns for cell in c.cells if cell.count),
                      observed=None if observed is None else len(observed),
                      tags=None if observed is None else sum(observed.values()),
                      period=period, shade=shade, fleet_wired=fleet is not None)

    async def technique_page(request: Request, session: Session) -> Response:
        tactic = request.path_params["tactic"]
        technique = request.path_params["technique"]
        if not TACTIC_ID_RE.fullmatch(tactic) or not (
                TECHNIQUE_ID_RE.fullmatch(technique) or SUB_TECHNIQUE_ID_RE.fullmatch(technique)):
            raise BadRequest("expected a tactic such as TA0007 and a technique such as T1083")
        period = period_of(request.query_params.get("period"))
        hits = await fleet_hits()
        view = technique_view((await cache.current()).rules, tactic, technique,
                              store.clock(), hits, period)
        samples = [] if hits is None else hits.samples_of(tactic, technique, period,
                                                          store.clock().timestamp())
        return render(request, session, "technique.html", view=view, period=period,
                      samples=samples, fleet_wired=fleet is not None)

    async def coverage_layer(request: Request, session: Session) -> Response:
        if request.query_params.get("layer") == "observed":
            period = period_of(request.query_params.get("period"))
            hits = await fleet_hits()
            counts: dict[str, int] = {}
            for (_, technique), count in (hits.observed(period) if hits else {}).items():
                counts[technique] = counts.get(technique, 0) + count
            body = orjson.dumps(layer_from_counts(
                counts, name=f"decnet-ttp observed techniques (last {period})"),
                option=orjson.OPT_INDENT_2)
            filename = f"decnet-ttp-observed-{period}.json"
        else:
            body = (await cache.current()).layer_json()
            filename = "decnet-ttp-coverage.json"
        return Response(body,
                        media_type="application/json", headers={
                            **SECURITY_HEADERS,
                            "Content-Disposition": f'attachment; filename="{filename}"'})

    return Starlette(routes=[
        Route("/", page(overview), methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        Route("/rules", page(rules_page), methods=["GET"]),
        Route("/rules/{rule_id}", page(rule_get), methods=["GET"]),
        Route("/rules/{rule_id}/state", page(set_state, write=True), methods=["POST"]),
        Route("/rules/{rule_id}/clear", page(clear_state, write=True), methods=["POST"]),
        Route("/history", page(history_page), methods=["GET"]),
        Route("/coverage", page(coverage_page), methods=["GET"]),
        Route("/coverage/layer.json", page(coverage_layer), methods=["GET"]),
        Route("/coverage/{tactic}/{technique}", page(technique_page), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])


def _moment(text: str | None, name: str) -> datetime | None:
    if not text or not text.strip():
        return None
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise BadRequest(f"{name}: expected an ISO 8601 time such as 2026-11-29T13:00") from None
