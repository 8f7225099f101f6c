"""The console in-process over an SQLite database store: sign-in, sessions, CSRF, roles,
escaping, inline errors and every page's content."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from decnet.swarm.console.mount import create_master_app
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.sql.tokens import TokenTable
from decnet.vocabulary import Scope
from tests.ttp.store.helpers import open_store, seed

HOSTILE = """\
rule_id: R0666
rule_version: 1
name: "<script>alert('name')</script>"
description: "<img src=x onerror=alert(1)> & \\"quotes\\""
applies_to: [command]
match:
  pattern: 'evil'
emits:
  - {tactic: TA0002, technique_id: T1059, confidence: 0.5}
evidence_fields: [command_text]
tests:
  fires:
    - event: {source_kind: command, payload: {command_text: "evil <script>alert(2)</script>"}}
"""


@dataclass
class Console:
    store: DatabaseRuleStore
    client: httpx.AsyncClient
    tokens: dict[str, str]

    async def sign_in(self, role: str) -> str:
        """Sign in with the `role` token; the CSRF token of the session."""
        page = await self.client.get("/ui/login")
        csrf = csrf_of(page.text)
        reply = await self.client.post("/ui/login", data={"token": self.tokens[role],
                                                          "csrf_token": csrf})
        assert reply.status_code == 303, reply.text
        return csrf_of((await self.client.get("/ui/rules")).text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    async with open_store() as store:
        await seed(store, "R0001")
        hostile = compile_rule(HOSTILE, source="R0666.yaml", expected_rule_id="R0666")
        await store.upsert_rule(hostile, source_path="R0666.yaml", updated_by="test")
        table = TokenTable(store.repo)
        tokens = {"viewer": "dttp_viewer-secret", "admin": "dttp_admin-secret"}
        for role, token in tokens.items():
            await table.create(f"{role}-console", role, token, None)
        transport = httpx.ASGITransport(app=create_master_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://master") as client:
            yield Console(store, client, tokens)


async def test_pages_need_a_sign_in(console: Console) -> None:
    for path in ("/ui/", "/ui/rules", "/ui/rules/R0001", "/ui/history", "/ui/coverage",
                 "/ui/coverage/layer.json"):
        reply = await console.client.get(path)
        assert reply.status_code == 303 and reply.headers["location"] == "/ui/login", path
    assert (await console.client.get("/")).headers["location"] == "/ui/"


async def test_a_bad_token_or_a_missing_csrf_token_signs_nobody_in(console: Console) -> None:
    csrf = csrf_of((await console.client.get("/ui/login")).text)
    reply = await console.client.post("/ui/login", data={"token": "dttp_nope",
                                                        "csrf_token": csrf})
    assert reply.status_code == 401 and "unknown, expired or revoked token" in reply.text
    reply = await console.client.post("/ui/login", data={"token": console.tokens["admin"]})
    assert reply.status_code == 403
    assert (await console.client.get("/ui/rules")).status_code == 303


async def test_the_session_cookie_and_the_security_headers(console: Console) -> None:
    csrf = csrf_of((await console.client.get("/ui/login")).text)
    reply = await console.client.post("/ui/login", data={"token": console.tokens["viewer"],
                                                        "csrf_token": csrf})
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert "secure" not in cookie  # plain http here; https sets it
    page = await console.client.get("/ui/rules")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_the_cookie_is_secure_over_https(console: Console) -> None:
    transport = httpx.ASGITransport(app=create_master_app(console.store))
    async with httpx.AsyncClient(transport=transport, base_url="https://master") as client:
        reply = await client.get("/ui/login")
        assert "secure" in reply.headers["set-cookie"].lower()


async def test_sign_in_rotates_the_session_and_sign_out_ends_it(console: Console) -> None:
    await console.client.get("/ui/login")
    before = console.client.cookies["dttp_console"]
    csrf = await console.sign_in("viewer")
    assert console.client.cookies["dttp_console"] != before
    reply = await console.client.post("/ui/logout", data={"csrf_token": csrf})
    assert reply.status_code == 303
    assert (await console.client.get("/ui/rules")).status_code == 303


async def test_a_revoked_token_ends_its_sessions(console: Console) -> None:
    await console.sign_in("admin")
    assert await TokenTable(console.store.repo).revoke("admin-console")
    assert (await console.client.get("/ui/rules")).status_code == 303


async def test_a_viewer_sees_no_form_and_cannot_write(console: Console) -> None:
    csrf = await console.sign_in("viewer")
    page = (await console.client.get("/ui/rules/R0001")).text
    assert 'id="silence"' not in page and "/clear" not in page
    reply = await console.client.post("/ui/rules/R0001/state", data={
        "csrf_token": csrf, "state": "disabled", "reason": "try"})
    assert reply.status_code == 403
    assert (await console.store.get_state("R0001")).is_default


async def test_writes_need_the_sessions_csrf_token(console: Console) -> None:
    csrf = await console.sign_in("admin")
    for offered in ({}, {"csrf_token": "forged"}):
        reply = await console.client.post("/ui/rules/R0001/state", data={
            "state": "disabled", "reason": "x", **offered})
        assert reply.status_code == 403
    reply = await console.client.post(
        "/ui/rules/R0001/state", headers={"X-CSRF-Token": csrf},
        data={"state": "disabled", "reason": "scripted"})
    assert reply.status_code == 303, reply.text
    state = await console.store.get_state("R0001")
    assert state.state.value == "disabled" and state.reason == "scripted"


async def test_an_admin_silences_for_one_decky_and_clears_it(console: Console) -> None:
    csrf = await console.sign_in("admin")
    reply = await console.client.post("/ui/rules/R0001/state", data={
        "csrf_token": csrf, "state": "disabled", "decky": "decky-03", "for": "4h",
        "reason": "monitoring job <b>INC-1182</b>"})
    assert reply.status_code == 303, reply.text
    scoped = await console.store.scoped_states("R0001")
    assert [s.scope for s in scoped] == [Scope(frozenset({"decky-03"}))]
    assert scoped[0].state.set_by == "admin-console"
    page = (await console.client.get("/ui/rules/R0001")).text
    assert "monitoring job &lt;b&gt;INC-1182&lt;/b&gt;" in page
    history = (await console.client.get("/ui/history?by=admin-console")).text
    assert "decky=decky-03" in history
    assert "decky=decky-03" not in (await console.client.get("/ui/history?by=bob")).text
    reply = await console.client.post("/ui/rules/R0001/clear", data={
        "csrf_token": csrf, "scope": "decky=decky-03"})
    assert reply.status_code == 303
    assert await console.store.scoped_states("R0001") == ()


async def test_bad_input_is_shown_inline_and_changes_nothing(console: Console) -> None:
    csrf = await console.sign_in("admin")
    for form, reason in (({"state": "disabled", "reason": " "}, "reason: say why"),
                         ({"state": "clipped", "confidence_max": "2", "reason": "r"},
                          "confidence_max must be in [0, 1]"),
                         ({"state": "disabled", "decky": "bad value!", "reason": "r"},
                          "invalid scope value"),
                         ({"state": "disabled", "for": "forever", "reason": "r"},
                          "for: expected a duration")):
        reply = await console.client.post("/ui/rules/R0001/state",
                                          data={"csrf_token": csrf, **form})
        assert reply.status_code == 422, form
        assert 'id="form-error"' in reply.text and reason in reply.text, reply.text
    assert (await console.store.get_state("R0001")).is_default
    assert await console.store.scoped_states("R0001") == ()


async def test_hostile_rule_text_and_evidence_are_escaped(console: Console) -> None:
    await console.sign_in("viewer")
    for path in ("/ui/rules", "/ui/rules/R0666", "/ui/rules?q=script"):
        page = (await console.client.get(path)).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in page, path
    page = (await console.client.get("/ui/rules/R0666")).text
    assert "1 of 1 cases pass" in page
    assert "evil &lt;script&gt;alert(2)&lt;/script&gt;" in page


async def test_rules_filters_and_coverage_drill_down(console: Console) -> None:
    await console.sign_in("viewer")
    table = (await console.client.get("/ui/rules?tactic=TA0002")).text
    assert 'data-rule="R0666"' in table and 'data-rule="R0001"' not in table
    table = (await console.client.get("/ui/rules?technique=t1548.001")).text
    assert 'data-rule="R0001"' in table and 'data-rule="R0666"' not in table
    table = (await console.client.get("/ui/rules?scoped=yes")).text
    assert "data-rule=" not in table
    coverage = (await console.client.get("/ui/coverage")).text
    assert 'href="/ui/coverage/TA0007/T1082?period=hour"' in coverage
    assert "start the master with <code>--nats URL</code>" in coverage
    drill = (await console.client.get("/ui/coverage/TA0007/T1082")).text
    assert "/ui/rules?tactic=TA0007&amp;technique=T1082" in drill
    assert 'data-rule="R0001"' in drill and 'data-rule="R0666"' not in drill
    bad = await console.client.get("/ui/coverage/TA0007/T1082%3Cx%3E")
    assert bad.status_code == 422 and "<x>" not in bad.text
    layer = await console.client.get("/ui/coverage/layer.json")
    assert layer.headers["content-disposition"].startswith("attachment")
    assert {t["techniqueID"] for t in layer.json()["techniques"]} >= {"T1082", "T1059"}


async def test_the_overview_lists_silences_about_to_expire(console: Console) -> None:
    csrf = await console.sign_in("admin")
    await console.client.post("/ui/rules/R0666/state", data={
        "csrf_token": csrf, "state": "clipped", "confidence_max": "0.2", "for": "30m",
        "reason": "noisy"})
    await console.client.post("/ui/rules/R0001/state", data={
        "csrf_token": csrf, "state": "disabled", "for": "1d", "reason": "later"})
    page = (await console.client.get("/ui/")).text
    assert 'id="rule-count">2<' in page
    assert "/ui/rules/R0666" in page and "/ui/rules/R0001" not in page
    assert "Workers report through NATS" in page  # no fleet source on this master


async def test_the_admin_api_is_still_served_beside_it(console: Console) -> None:
    reply = await console.client.get(
        "/api/v1/rules", headers={"Authorization": f"Bearer {console.tokens['viewer']}"})
    assert reply.status_code == 200 and {r["rule_id"] for r in reply.json()} == {
        "R0001", "R0666"}
    assert (await console.client.get("/ui/static/console.js")).status_code == 200
