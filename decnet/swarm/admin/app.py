"""The admin API as a Starlette app over the master's `DatabaseRuleStore`.

Every route but the OpenAPI document needs `Authorization: Bearer TOKEN`: 401 without a
valid one, 403 for a viewer's write. Bad input is a 422 naming the reason; a database
outage a 503; nothing is a 500. Tokens are never logged: only their names, which are
recorded as `set_by` and `via` of every write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from decnet.swarm.admin.openapi import openapi_document
from decnet.swarm.admin.requests import BadRequest, parse_scope, parse_state_request
from decnet.ttp.constants import MAX_ADMIN_BODY_BYTES, MAX_HISTORY_PAGE
from decnet.ttp.coverage import coverage_by_tactic, layer_from_rules
from decnet.ttp.errors import InvalidRuleId, InvalidScopeError, InvalidStateError, StoreError
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.codec import history_to_dict, scoped_to_dict, state_to_dict
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.sql.tokens import TokenInfo, TokenTable
from decnet.vocabulary import as_utc, validate_rule_id

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
Handler = Callable[[Request, TokenInfo], Awaitable[Response]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def error(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": reason}, status, headers)


def rule_summary(rule: CompiledRule) -> dict[str, Any]:
    return {"rule_id": rule.rule_id, "rule_version": rule.rule_version, "name": rule.name,
            "state": state_to_dict(rule.state.effective()),
            "scopes": [scoped_to_dict(item) for item in rule.scoped
                       if not item.state.is_expired()]}


def create_admin_app(store: DatabaseRuleStore) -> Starlette:
    tokens = TokenTable(store.repo)

    def route(handler: Handler, *,
              write: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                header = request.headers.get("authorization", "")
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    return error(401, "a bearer token is needed",
                                 {"WWW-Authenticate": "Bearer"})
                holder = await tokens.find(token.strip())
                if holder is None:
                    return error(401, "unknown, expired or revoked token",
                                 {"WWW-Authenticate": "Bearer"})
                if write and holder.role != "admin":
                    return error(403, "this token may read only (role viewer)")
                return await handler(request, holder)
            except (BadRequest, InvalidRuleId, InvalidScopeError, InvalidStateError) as exc:
                return error(422, str(exc))
            except StoreError as exc:
                log.warning("admin API: the rule database failed: %s", exc)
                return error(503, "the rule database is unavailable",
                             {"Retry-After": "5"})

        return endpoint

    async def list_rules(request: Request, holder: TokenInfo) -> Response:
        return _json([rule_summary(rule) for rule in await store.load_compiled()])

    async def one_rule(request: Request, holder: TokenInfo) -> Response:
        rule_id = validate_rule_id(request.path_params["rule_id"])
        found = [r for r in await store.load_compiled() if r.rule_id == rule_id]
        if not found:
            return error(404, f"no rule {rule_id}")
        rule = await store.with_source(found[0])
        return _json({**rule_summary(rule), "source_path": rule.source_path,
                      "yaml": rule.source_yaml})

    async def put_state(request: Request, holder: TokenInfo) -> Response:
        rule_id = validate_rule_id(request.path_params["rule_id"])
        raw = await _body(request)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest("the body is not JSON") from None
        wanted = parse_state_request(body, store.clock())
        if wanted.scope is None:
            await store.set_state(rule_id, wanted.state, holder.name, via=holder.name)
            state = await store.read_state(rule_id)
            return _json({"rule_id": rule_id, "scope": None, **state_to_dict(state)})
        await store.set_scoped_state(rule_id, wanted.scope, wanted.state, holder.name,
                                     via=holder.name)
        scoped = next((s for s in await store.scoped_states(rule_id)
                       if s.scope == wanted.scope), None)
        if scoped is None:  # expired between the write and the read
            return _json({"rule_id": rule_id, "scope": wanted.scope.key,
                          **state_to_dict(wanted.state)})
        return _json({"rule_id": rule_id, **scoped_to_dict(scoped)})

    async def delete_state(request: Request, holder: TokenInfo) -> Response:
        rule_id = validate_rule_id(request.path_params["rule_id"])
        params = request.query_params
        unknown = set(params) - {"scope", "all_scopes", "reason"}
        if unknown:
            raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        scope = parse_scope(params.getlist("scope") or None)
        all_scopes = params.get("all_scopes", "false").lower()
        if all_scopes not in {"true", "false"}:
            raise BadRequest("all_scopes: true or false")
        if scope is not None and all_scopes == "true":
            raise BadRequest("give scope or all_scopes, not both")
        reason = params.get("reason")
        cleared: list[str | None] = []
        if scope is None:
            if not (await store.read_state(rule_id)).is_default:
                cleared.append(None)
            await store.clear_state(rule_id, holder.name, reason=reason, via=holder.name)
        for item in await store.scoped_states(rule_id):
            if all_scopes == "true" or item.scope == scope:
                await store.clear_scoped_state(rule_id, item.scope, holder.name,
                                               reason=reason, via=holder.name)
                cleared.append(item.scope.key)
        return _json({"rule_id": rule_id, "cleared": cleared})

    async def history(request: Request, holder: TokenInfo) -> Response:
        params = request.query_params
        unknown = set(params) - {"rule_id", "since", "limit"}
        if unknown:
            raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        rule_id = params.get("rule_id")
        if rule_id is not None:
            validate_rule_id(rule_id)
        since = None
        if params.get("since") is not None:
            try:
                since = as_utc(datetime.fromisoformat(params["since"]))
            except ValueError:
                raise BadRequest("since: expected an ISO 8601 time") from None
        limit_text = params.get("limit", str(MAX_HISTORY_PAGE))
        if not (limit_text.isascii() and limit_text.isdigit()) or \
                not 1 <= int(limit_text) <= MAX_HISTORY_PAGE:
            raise BadRequest(f"limit: a whole number in [1, {MAX_HISTORY_PAGE}]")
        entries = await store.history(rule_id, since=since, limit=int(limit_text))
        return _json([history_to_dict(entry) for entry in entries])

    async def coverage(request: Request, holder: TokenInfo) -> Response:
        rules = await store.load_compiled()
        rows = [{"tactic": row.tactic, "name": row.name, "techniques": list(row.techniques),
                 "rules": list(row.rules)} for row in coverage_by_tactic(rules)]
        return _json({"tactics": rows, "navigator_layer": layer_from_rules(rules)})

    async def openapi(request: Request) -> Response:
        return _json(openapi_document())

    return Starlette(routes=[
        Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"]),
        Route(f"{PREFIX}/rules", route(list_rules), methods=["GET"]),
        Route(f"{PREFIX}/rules/{{rule_id}}", route(one_rule), methods=["GET"]),
        Route(f"{PREFIX}/rules/{{rule_id}}/state", route(put_state, write=True),
              methods=["PUT"]),
        Route(f"{PREFIX}/rules/{{rule_id}}/state", route(delete_state, write=True),
              methods=["DELETE"]),
        Route(f"{PREFIX}/history", route(history), methods=["GET"]),
        Route(f"{PREFIX}/coverage", route(coverage), methods=["GET"]),
    ])


async def _body(request: Request) -> bytes:
    """The request body, refused (422) past `MAX_ADMIN_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ADMIN_BODY_BYTES:
            raise BadRequest(f"the body is larger than {MAX_ADMIN_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
