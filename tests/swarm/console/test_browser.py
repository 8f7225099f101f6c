"""The console in a real Chromium against a real `decnet-ttp master --http` on PostgreSQL
and a real worker: the daily loop of an analyst, a viewer's limits, hostile text, and the
keyboard. Screenshots of each page go to docs/screenshots/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.swarm.console.browser import browser_page, screenshot
from tests.swarm.databases import database_params
from tests.swarm.harness import cli_command
from tests.swarm.swarm import Swarm, Worker
from tests.swarm.test_fleet_nats import (  # noqa: F401 (shared_nats: a fixture)
    SHARED_NATS,
    shared_nats,
    use_nats,
)
from tests.ttp.store.helpers import rule_yaml
from tests.waiting import poll

SHIPPED = Path(__file__).resolve().parents[3] / "rules" / "ttp"
pytestmark = pytest.mark.parametrize("database", database_params("postgres"), indirect=True)

PWNED = "window.__pwned === undefined"
EVIL_COMMAND = "uname -a; echo '<img src=x onerror=\"window.__pwned=1\">'"
HOSTILE = """\
rule_id: R0666
rule_version: 1
name: "<img src=x onerror=\\"window.__pwned=1\\">"
description: "<script>window.__pwned=1; alert(1)</script> & friends"
applies_to: [command]
match:
  pattern: 'evil'
emits:
  - {tactic: TA0002, technique_id: T1059, confidence: 0.5}
evidence_fields: [command_text]
tests:
  fires:
    - event:
        {source_kind: command, payload: {command_text: "evil <script>window.__pwned=1</script>"}}
"""


async def start(swarm: Swarm, *, pack: bool = False) -> tuple[str, dict[str, str]]:
    """A master serving the console over R0001 and R0666 (and with `pack` the rest of the
    shipped pack, for screenshots that look like a real day); its URL and two tokens."""
    if pack:
        for path in SHIPPED.glob("*.yaml"):
            if path.name != "R0001.yaml":
                shutil.copy(path, swarm.rules_dir / path.name)
    (swarm.rules_dir / "R0001.yaml").write_text(rule_yaml("R0001"), encoding="utf-8")
    (swarm.rules_dir / "R0666.yaml").write_text(HOSTILE, encoding="utf-8")
    await swarm.upgrade()
    proc = swarm.group.add("master", cli_command(
        "master", "--rules", str(swarm.rules_dir), "--db", swarm.db_url,
        "--http", "127.0.0.1:0", *swarm.master_args))
    swarm.masters.append(proc)
    await proc.start()
    admin = await proc.wait_event("admin")
    await proc.wait_event("ready")
    tokens = {}
    for role in ("viewer", "admin"):
        _, out, _ = await swarm.cli("token", "create", "--role", role, "--name",
                                    f"{role}-alice", "--json")
        tokens[role] = json.loads(out)["token"]
    return str(admin["url"]).removesuffix("/api/v1"), tokens


async def sign_in(page: Any, base: str, token: str, *, shot: bool = False) -> None:
    await page.goto(f"{base}/ui/")
    assert page.url == f"{base}/ui/login"
    if shot:
        await screenshot(page, "login")
    await page.fill("#token", token)
    await page.press("#token", "Enter")
    await page.wait_for_url(f"{base}/ui/")


async def tags_for(worker: Worker, decky: str) -> list[str]:
    assert worker.client is not None
    event = {"source_kind": "command", "source_id": f"c-{decky}", "decky_id": decky,
             "payload": {"command_text": "uname -a"}}
    reply = await worker.client.post("/events", json=event)
    reply.raise_for_status()
    return [t["rule_id"] for t in reply.json()]


async def a_day_of_events(worker: Worker) -> None:
    """The events of every shipped rule's `tests: fires:` (a day's worth of hits across the
    pack, for the screenshots)."""
    assert worker.client is not None
    events = []
    for path in sorted(SHIPPED.glob("*.yaml")):
        tests = (yaml.safe_load(path.read_text(encoding="utf-8")).get("tests") or {})
        for n, case in enumerate(tests.get("fires") or []):
            event = dict(case["event"])
            event.setdefault("source_id", f"{path.stem}-{n}")
            event.setdefault("decky_id", f"decky-{n % 4 + 1:02d}")
            events.append(event)
    reply = await worker.client.post("/events", json=events)
    assert reply.status_code in (200, 207), reply.text


async def reload_until(page: Any, url: str, selector: str, wanted: str) -> None:
    """Load `url` until the element at `selector` holds `wanted` (the workers report
    every 0.3 s here)."""
    async def shown() -> bool:
        await page.goto(url)
        found = page.locator(selector)
        return await found.count() > 0 and wanted in await found.first.inner_text()

    await poll(shown, timeout=15, interval=0.3, message=f"{selector} showing {wanted!r}")


async def tagging(worker: Worker, decky: str, expected: bool) -> None:
    async def right() -> bool:
        return ("R0001" in await tags_for(worker, decky)) is expected

    await poll(right, timeout=15, interval=0.1,
               message=f"R0001 {'' if expected else 'not '}tagging {decky}")


@pytest.mark.usefixtures("shared_nats")
async def test_silence_a_rule_for_one_decky_from_the_page(swarm: Swarm) -> None:
    use_nats(swarm, SHARED_NATS)
    base, tokens = await start(swarm, pack=True)
    [worker] = await swarm.start_workers(1)
    await tagging(worker, "decky-03", True)
    await a_day_of_events(worker)
    async with browser_page() as page:
        await sign_in(page, base, tokens["admin"])
        await page.locator("#tags-last-hour").wait_for()
        await reload_until(page, f"{base}/ui/", "#fleet", "ok")
        await screenshot(page, "overview")
        await page.click("nav >> text=Rules")
        await page.wait_for_selector("#rules")
        await page.click("#rules >> text=R0001")
        await page.wait_for_selector("#silence")

        # keyboard only: Tab from the top of the page into the form, fill it, Enter
        await page.keyboard.press("Tab")
        for _ in range(60):
            focused = await page.evaluate("document.activeElement.name || ''")
            if focused == "state":
                break
            await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.value") == "disabled"
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.id") == "confidence_max"
        await page.keyboard.press("Tab")
        await page.keyboard.type("decky-03")
        await page.keyboard.press("Tab")  # sensors: every sensor
        await page.keyboard.press("Tab")
        await page.keyboard.press("Control+A")
        await page.keyboard.type("2h")
        await page.keyboard.press("Tab")
        await page.keyboard.type("monitoring job on decky-03 (INC-1182)")
        await page.keyboard.press("Enter")
        row = page.locator('#states tr[data-scope="decky=decky-03"]')
        await row.wait_for()
        assert "disabled" in await row.inner_text()
        assert "INC-1182" in await row.inner_text()
        await screenshot(page, "rule")
        await page.goto(f"{base}/ui/rules")
        await page.locator('#rules tr[data-rule="R0001"] .scope').wait_for()
        await screenshot(page, "rules")

        await tagging(worker, "decky-03", False)
        assert "R0001" in await tags_for(worker, "decky-04")

        await page.click("nav >> text=History")
        await page.fill('input[name="by"]', "admin-alice")
        await page.press('input[name="by"]', "Enter")
        await page.wait_for_url("**/ui/history?*")
        entry = page.locator("#history tbody tr", has_text="decky=decky-03")
        assert await entry.count() == 1
        assert "INC-1182" in await entry.inner_text()
        await screenshot(page, "history")

        await page.goto(f"{base}/ui/rules/R0001")
        await page.click('#states tr[data-scope="decky=decky-03"] button')
        await page.locator('#states tr[data-scope="decky=decky-03"]').wait_for(
            state="detached")
        await tagging(worker, "decky-03", True)
        assert worker.client is not None
        evil = await worker.client.post("/events", json={
            "source_kind": "command", "source_id": "evil", "decky_id": "decky-04",
            "payload": {"command_text": EVIL_COMMAND}})
        assert {t["rule_id"] for t in evil.json()} == {"R0001"}

        # what the worker tagged: hits on the rules page, sortable and filterable
        await page.goto(f"{base}/ui/rules?hits=day&sort=day")
        hits = page.locator('#rules tr[data-rule="R0001"] .hits-day')
        assert int(await hits.inner_text()) >= 3
        assert await page.locator('#rules tr[data-rule="R0666"]').count() == 0
        await screenshot(page, "rules-hits")

        await page.click("nav >> text=Coverage")
        await page.wait_for_selector("#matrix")
        await screenshot(page, "coverage")
        await page.click("text=tags observed")
        await page.wait_for_selector('#matrix[data-shade="observed"]')
        cell = page.locator('#matrix a[data-technique="T1082"]').first
        assert int(await cell.get_attribute("data-observed") or 0) >= 3
        await screenshot(page, "coverage-observed")
        await cell.click()
        await page.wait_for_selector("#technique-rules")
        assert await page.locator('#technique-rules tr[data-rule="R0001"]').count() == 1
        assert await page.locator('#technique-rules tr[data-rule="R0666"]').count() == 0
        # the newest sample is the hostile event's, its text shown as text
        await reload_until(page, page.url, "#samples .sample pre", "onerror")
        newest = page.locator("#samples .sample pre").first
        assert EVIL_COMMAND.replace('"', '\\"') in await newest.inner_text()
        assert await page.locator("#samples img, #samples script").count() == 0
        await screenshot(page, "technique")
        await page.click("text=open them in the rules table")
        await page.wait_for_selector("#rules")
        assert await page.locator('#rules tr[data-rule="R0001"]').count() == 1
        assert await page.evaluate(PWNED) and page.dialogs == []


async def test_a_viewer_cannot_reach_the_forms(swarm: Swarm) -> None:
    base, tokens = await start(swarm)
    async with browser_page() as page:
        await sign_in(page, base, tokens["viewer"], shot=True)
        await page.goto(f"{base}/ui/rules/R0001")
        await page.wait_for_selector("#states")
        assert await page.locator("#silence").count() == 0
        assert await page.locator('form[action*="/clear"]').count() == 0
        csrf = await page.locator('input[name="csrf_token"]').first.get_attribute("value")
        reply = await page.request.post(f"{base}/ui/rules/R0001/state", form={
            "csrf_token": csrf, "state": "disabled", "reason": "a viewer tries"})
        assert reply.status == 403
    _, out, _ = await swarm.cli("state", "get", "R0001", "--db", swarm.db_url)
    assert "enabled" in out


async def test_hostile_rule_text_and_evidence_render_as_text(swarm: Swarm) -> None:
    base, tokens = await start(swarm)
    async with browser_page() as page:
        await sign_in(page, base, tokens["viewer"])
        await page.goto(f"{base}/ui/rules")
        row = page.locator('#rules tr[data-rule="R0666"]')
        assert '<img src=x onerror="window.__pwned=1">' in await row.inner_text()
        await page.goto(f"{base}/ui/rules/R0666")
        await page.locator("details").first.click()
        body = await page.locator("main").inner_text()
        assert "<script>window.__pwned=1; alert(1)</script> & friends" in body
        assert "evil <script>window.__pwned=1</script>" in body  # the test's event
        assert "1 of 1 cases pass" in body
        assert await page.locator("main script, main img").count() == 0
        assert await page.evaluate(PWNED) and page.dialogs == []
