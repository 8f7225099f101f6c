"""Chromium from the system's packages driven by Playwright, for the console's tests.

The pip package never downloads a browser here: the tests launch `/usr/bin/chromium`
(Debian's `chromium` package, which `.ci/run` installs). Without it a test is skipped,
or fails under `CI=true` (a CI run must not pass by skipping what it was meant to check).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
#: Set to 1 to refresh the README's screenshots; otherwise they go to a temporary folder,
#: so a test run never changes the working tree.
SCREENSHOTS_ENV = "DECNET_TTP_UPDATE_SCREENSHOTS"
VIEWPORT = {"width": 1200, "height": 760}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Any]:
    """A fresh page in a fresh headless Chromium; every dialog the page opens is recorded
    in `page.dialogs` (and dismissed), so a test can assert none was."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context(viewport=VIEWPORT)
            page = await context.new_page()
            page.set_default_timeout(10_000)
            page.dialogs = []

            async def on_dialog(dialog: Any) -> None:
                page.dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", on_dialog)
            yield page
        finally:
            await browser.close()


async def screenshot(page: Any, name: str) -> None:
    """Take NAME.png of what the page shows: into docs/screenshots/ (the README shows them)
    with DECNET_TTP_UPDATE_SCREENSHOTS=1, else into a temporary folder."""
    folder = DOCS_SCREENSHOTS if os.environ.get(SCREENSHOTS_ENV) == "1" else \
        Path(tempfile.gettempdir()) / "decnet-ttp-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path))
    assert path.stat().st_size > 1000, f"{name}.png is empty"
