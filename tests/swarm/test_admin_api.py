"""The master's admin API over real HTTP: a `decnet-ttp master --http` process on
PostgreSQL, tokens made by `decnet-ttp token`, every response checked against the
OpenAPI document it serves."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.swarm.databases import database_params
from tests.swarm.harness import cli_command
from tests.swarm.swarm import Swarm

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "ttp"

pytestmark = pytest.mark.parametrize("database", database_params("postgres"), indirect=True)


class Api:
    """A client of the admin API that checks every response against the document."""

    def __init__(self, base: str, document: dict[str, Any]) -> None:
        self.base = base
        self.document = document

    def check(self, method: str, template: str, response: httpx.Response) -> Any:
        operation = self.document["paths"][template][method.lower()]
        documented = operation["responses"]
        status = str(response.status_code)
        assert status in documented, (method, template, status, response.text)
        assert response.status_code < 500 or status == "503", response.text
        content = documented[status].get("content")
        if content is None:
            return None
        schema = {**content["application/json"]["schema"],
                  "components": self.document["components"]}
        body = response.json()
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert not errors, (method, template, status, [e.message for e in errors])
        return body


async def start(swarm: Swarm) -> tuple[str, dict[str, str]]:
    """A master with the admin API on a free port; its base URL and two tokens."""
    for name in ("R0001.yaml", "R0002.yaml", "R0003.yaml"):
        shutil.copy(SHIPPED / name, swarm.rules_dir / name)
    await swarm.upgrade()
    proc = swarm.group.add("master", cli_command(
        "master", "--rules", str(swarm.rules_dir), "--db", swarm.db_url,
        "--http", "127.0.0.1:0"))
    swarm.masters.append(proc)
    await proc.start()
    admin = await proc.wait_event("admin")
    await proc.wait_event("ready")
    tokens = {}
    for role in ("viewer", "admin"):
        _, out, _ = await swarm.cli("token", "create", "--role", role, "--name",
                                    f"{role}-console", "--json")
        tokens[role] = json.loads(out)["token"]
    return str(admin["url"]), tokens


async def test_roles_writes_history_and_errors_over_http(swarm: Swarm) -> None:
    base, tokens = await start(swarm)
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        document = (await client.get("/openapi.json")).json()
        api = Api(base, document)
        assert document["openapi"].startswith("3.1")

        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            response = await client.get("/rules", headers=headers)
            assert response.status_code == 401
            api.check("GET", "/rules", response)

        rules = api.check("GET", "/rules", await client.get("/rules", headers=viewer))
        assert [r["rule_id"] for r in rules] == ["R0001", "R0002", "R0003"]
        detail = api.check("GET", "/rules/{rule_id}",
                           await client.get("/rules/R0001", headers=viewer))
        assert detail["yaml"] == (SHIPPED / "R0001.yaml").read_text()
        missing = await client.get("/rules/R9999", headers=viewer)
        assert missing.status_code == 404
        api.check("GET", "/rules/{rule_id}", missing)

        body = {"state": "disabled", "reason": "noisy on decky-03", "for": "4h",
                "scope": "decky=decky-03"}
        denied = await client.put("/rules/R0001/state", json=body, headers=viewer)
        assert denied.status_code == 403
        api.check("PUT", "/rules/{rule_id}/state", denied)
        done = api.check("PUT", "/rules/{rule_id}/state",
                         await client.put("/rules/R0001/state", json=body, headers=admin))
        assert (done["scope"], done["state"], done["set_by"]) == \
            ("decky=decky-03", "disabled", "admin-console")
        [listed] = [r for r in api.check("GET", "/rules", await client.get(
            "/rules", headers=viewer)) if r["rule_id"] == "R0001"]
        assert listed["state"]["state"] == "enabled"
        assert [s["scope"] for s in listed["scopes"]] == ["decky=decky-03"]
        clipped = {"state": "clipped", "confidence_max": 0.3, "reason": "tune"}
        api.check("PUT", "/rules/{rule_id}/state",
                  await client.put("/rules/R0002/state", json=clipped, headers=admin))

        for bad, reason in [({"state": "off", "reason": "x"}, "state"),
                            ({"state": "clipped", "reason": "x"}, "confidence_max"),
                            ({"state": "disabled"}, "reason"),
                            ({"state": "disabled", "reason": "x", "for": "soon"}, "for"),
                            ({"state": "disabled", "reason": "x", "scope": "host=a"}, "scope"),
                            ({"state": "disabled", "reason": "x", "extra": 1}, "unknown"),
                            ([1, 2], "object")]:
            response = await client.put("/rules/R0001/state", json=bad, headers=admin)
            assert response.status_code == 422, (bad, response.text)
            assert reason in api.check("PUT", "/rules/{rule_id}/state", response)["error"]
        response = await client.put("/rules/R0001/state", content=b"{", headers=admin)
        assert response.status_code == 422
        response = await client.put("/rules/R%2A/state", json=body, headers=admin)
        assert response.status_code == 422

        cleared = api.check("DELETE", "/rules/{rule_id}/state", await client.delete(
            "/rules/R0001/state", params={"scope": "decky=decky-03", "reason": "quiet now"},
            headers=admin))
        assert cleared["cleared"] == ["decky=decky-03"]

        entries = api.check("GET", "/history", await client.get(
            "/history", params={"rule_id": "R0001"}, headers=viewer))
        assert [(e["action"], e["scope"], e["by"], e["via"]) for e in entries] == [
            ("set", "decky=decky-03", "admin-console", "admin-console"),
            ("clear", "decky=decky-03", "admin-console", "admin-console")]
        assert entries[1]["reason"] == "quiet now"
        coverage = api.check("GET", "/coverage", await client.get("/coverage", headers=viewer))
        assert any(row["rules"] for row in coverage["tactics"])

        await swarm.cli("token", "revoke", "--name", "viewer-console")
        assert (await client.get("/rules", headers=viewer)).status_code == 401
    master_log = swarm.masters[0].log_path.read_text()
    assert tokens["admin"] not in master_log and tokens["viewer"] not in master_log


_TEXT = st.text(max_size=20)
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6),
                   st.floats(allow_nan=False), _TEXT, st.lists(_TEXT, max_size=3))
_BODY = st.one_of(
    st.fixed_dictionaries({"state": st.sampled_from(["enabled", "disabled", "clipped", "x"]),
                           "reason": _TEXT},
                          optional={"confidence_max": _VALUE, "for": _VALUE,
                                    "expires_at": _VALUE,
                                    "scope": st.one_of(_VALUE, st.just("decky=d1"))}),
    st.dictionaries(_TEXT, _VALUE, max_size=3), _VALUE)


async def test_every_response_matches_the_openapi_document(swarm: Swarm) -> None:
    base, tokens = await start(swarm)
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    async with httpx.AsyncClient(timeout=10) as client:
        document = (await client.get(f"{base}/openapi.json")).json()
    api = Api(base, document)

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(rule_id=st.one_of(st.sampled_from(["R0001", "R0002", "R9"]),
                             st.text("abR0*.", max_size=5)),
           body=_BODY, query=st.dictionaries(
               st.sampled_from(["scope", "all_scopes", "reason", "rule_id", "since",
                                "limit", "other"]), _TEXT, max_size=2))
    def check(rule_id: str, body: object, query: dict[str, str]) -> None:
        with httpx.Client(base_url=base, timeout=10, headers=admin) as client:
            path = f"/rules/{httpx.URL(rule_id).raw_path.decode() or 'x'}"
            if rule_id and "/" not in rule_id and rule_id not in (".", ".."):
                api.check("GET", "/rules/{rule_id}", client.get(path))
                api.check("PUT", "/rules/{rule_id}/state",
                          client.put(f"{path}/state", json=body))
                api.check("DELETE", "/rules/{rule_id}/state",
                          client.delete(f"{path}/state", params=query))
            api.check("GET", "/history", client.get("/history", params=query))
            api.check("GET", "/rules", client.get("/rules"))

    await asyncio.to_thread(check)
