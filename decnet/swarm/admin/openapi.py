"""The OpenAPI 3.1 document of the admin API (its schemas are plain JSON Schema, so a
test can check every real response against them)."""

from __future__ import annotations

import functools
from typing import Any

from decnet.ttp.constants import MAX_HISTORY_PAGE, MAX_STATE_REASON_BYTES

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

STATE_FIELDS: dict[str, Any] = {
    "state": {"type": "string", "enum": ["enabled", "disabled", "clipped"]},
    "confidence_max": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    "expires_at": _NULLABLE_TIME,
    "reason": _NULLABLE_STR,
    "set_by": _NULLABLE_STR,
    "set_at": _NULLABLE_TIME,
}
_STATE_REQUIRED = list(STATE_FIELDS)
_SCOPE_FIELDS: dict[str, Any] = {
    "scope": {"type": "string", "description": "canonical key, e.g. decky=decky-03;sensor=s1"},
    "deckies": {"type": "array", "items": {"type": "string"}},
    "sensors": {"type": "array", "items": {"type": "string"}},
}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": {"type": "string"}}),
    "State": _obj(STATE_FIELDS),
    "ScopedState": _obj({**_SCOPE_FIELDS, **STATE_FIELDS}),
    "Rule": _obj({"rule_id": {"type": "string"}, "rule_version": {"type": "integer"},
                  "name": {"type": "string"}, "state": _ref("State"),
                  "scopes": {"type": "array", "items": _ref("ScopedState")}}),
    "RuleDetail": _obj({"rule_id": {"type": "string"}, "rule_version": {"type": "integer"},
                        "name": {"type": "string"}, "state": _ref("State"),
                        "scopes": {"type": "array", "items": _ref("ScopedState")},
                        "source_path": _NULLABLE_STR, "yaml": {"type": "string"}}),
    "StateChange": {
        "type": "object", "additionalProperties": False, "required": ["state", "reason"],
        "properties": {
            "state": {"type": "string", "enum": ["enabled", "disabled", "clipped"]},
            "reason": {"type": "string", "minLength": 1,
                       "description": f"at most {MAX_STATE_REASON_BYTES} bytes"},
            "confidence_max": {"type": "number", "minimum": 0, "maximum": 1,
                               "description": "required by clipped"},
            "expires_at": {"type": "string", "format": "date-time"},
            "for": {"oneOf": [{"type": "number", "exclusiveMinimum": 0},
                              {"type": "string", "examples": ["4h", "1h30m"]}]},
            "scope": {"oneOf": [
                {"type": "string", "examples": ["decky=decky-03,decky-07"]},
                {"type": "array", "items": {"type": "string"}},
                {"type": "object", "additionalProperties": False, "properties": {
                    "decky": {"type": "array", "items": {"type": "string"}},
                    "sensor": {"type": "array", "items": {"type": "string"}}}}]},
        },
    },
    "StateResult": _obj({"rule_id": {"type": "string"}, "scope": _NULLABLE_STR,
                         "deckies": {"type": "array", "items": {"type": "string"}},
                         "sensors": {"type": "array", "items": {"type": "string"}},
                         **STATE_FIELDS}, ["rule_id", "scope", *_STATE_REQUIRED]),
    "Cleared": _obj({"rule_id": {"type": "string"},
                     "cleared": {"type": "array", "items": _NULLABLE_STR}}),
    "HistoryEntry": _obj({
        "rule_id": {"type": "string"},
        "action": {"type": "string", "enum": ["set", "clear", "expired"]},
        "scope": _NULLABLE_STR,
        "old": {"oneOf": [{"type": "null"}, _ref("State")]},
        "new": {"oneOf": [{"type": "null"}, _ref("State")]},
        "by": _NULLABLE_STR, "reason": _NULLABLE_STR,
        "at": {"type": "string", "format": "date-time"}, "via": _NULLABLE_STR}),
    "Coverage": _obj({
        "tactics": {"type": "array", "items": _obj({
            "tactic": {"type": "string"}, "name": {"type": "string"},
            "techniques": {"type": "array", "items": {"type": "string"}},
            "rules": {"type": "array", "items": {"type": "string"}}})},
        "navigator_layer": {"type": "object"}}),
}


def _responses(ok: dict[str, Any] | None, *codes: int) -> dict[str, Any]:
    reasons = {401: "no valid bearer token", 403: "a viewer's write", 404: "no such rule",
               422: "bad input (the reason is in `error`)",
               503: "the rule database is unavailable"}
    found: dict[str, Any] = {}
    if ok is not None:
        found["200"] = {"description": "OK",
                        "content": {"application/json": {"schema": ok}}}
    for code in codes:
        found[str(code)] = {"description": reasons[code],
                            "content": {"application/json": {"schema": _ref("Error")}}}
    return found


_RULE_ID = {"name": "rule_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"}}


@functools.cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "decnet-ttp admin API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/openapi.json": {"get": {"security": [], "summary": "This document",
                                      "responses": {"200": {"description": "OK"}}}},
            "/rules": {"get": {
                "summary": "Every rule with its state and scoped states",
                "responses": _responses({"type": "array", "items": _ref("Rule")},
                                        401, 503)}},
            "/rules/{rule_id}": {"get": {
                "summary": "One rule, with its source YAML", "parameters": [_RULE_ID],
                "responses": _responses(_ref("RuleDetail"), 401, 404, 422, 503)}},
            "/rules/{rule_id}/state": {
                "put": {"summary": "Set the state (or a scoped state) of a rule (admin)",
                        "parameters": [_RULE_ID],
                        "requestBody": {"required": True, "content": {
                            "application/json": {"schema": _ref("StateChange")}}},
                        "responses": _responses(_ref("StateResult"), 401, 403, 422, 503)},
                "delete": {
                    "summary": "Clear the unscoped state, one scope, or every state (admin)",
                    "parameters": [
                        _RULE_ID,
                        {"name": "scope", "in": "query", "schema": {"type": "string"}},
                        {"name": "all_scopes", "in": "query",
                         "schema": {"type": "string", "enum": ["true", "false"]}},
                        {"name": "reason", "in": "query", "schema": {"type": "string"}}],
                    "responses": _responses(_ref("Cleared"), 401, 403, 422, 503)}},
            "/history": {"get": {
                "summary": "State changes, oldest first (the newest `limit`)",
                "parameters": [
                    {"name": "rule_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query",
                     "schema": {"type": "string", "format": "date-time"}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1,
                                "maximum": MAX_HISTORY_PAGE}}],
                "responses": _responses({"type": "array", "items": _ref("HistoryEntry")},
                                        401, 422, 503)}},
            "/coverage": {"get": {
                "summary": "ATT&CK coverage by tactic and as a Navigator layer",
                "responses": _responses(_ref("Coverage"), 401, 503)}},
        },
    }
