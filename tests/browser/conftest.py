"""The web page in a real browser: Playwright (from PyPI) driving Debian's Chromium.

Screenshots go to ``$CIRASA_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the repository's root),
one per step named ``<test>-<step>.png``. In CI a missing Chromium fails the run; elsewhere the
browser tests skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.api.test_auth import jwks_url  # noqa: F401 (a fixture: an issuer's keys, for sign-in)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CIRASA_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "Debian's chromium is not installed (bash scripts/ensure-chromium.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: in CI the browser tests must run")
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: Playwright's sync API runs an event loop in this thread while it is open, and
    the asyncio tests that follow need the thread without one."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


class Shots:
    """Saves screenshots of one test's page as ``<test>-<step>.png``."""

    def __init__(self, page: Page, test: str) -> None:
        self.page, self.test = page, test
        self.saved: list[Path] = []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str) -> None:
        path = ARTIFACTS / f"{self.test}-{step}.png"
        self.page.screenshot(path=path, full_page=True)
        self.saved.append(path)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.set_default_timeout(20_000)
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
def shots(page: Page, request: pytest.FixtureRequest) -> Shots:
    return Shots(page, request.node.name.removeprefix("test_"))
