"""Browser fixtures: a live studio, Debian's chromium through Playwright, sign-in.

Tasks run inline (the studio tests' autouse settings fixture), so a job invoked
from the browser has finished when the invoking request returns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

# The studio tests' fixtures, shared rather than copied: inline tasks and a
# private datastore for every test (autouse), and the cast of users.
from tests.studio.conftest import PASSWORD, Cast, cast, studio_settings  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
TIMEOUT_MS = 10_000
reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the test, for the page fixture's teardown."""
    report = yield
    item.stash.setdefault(reports_key, {})[report.when] = report
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"browser tests need Debian's chromium at {CHROMIUM}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; .ci/run installs it")
        pytest.skip(f"{reason} (apt-get install chromium)")
    # Playwright's sync API keeps an asyncio loop running on this thread, and
    # Django then refuses ORM calls from the (synchronous) test code. Allowed
    # only while the browser is up: the package scope ends it with the e2e tests.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(
    browser: Browser, live_server: LiveServer, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh browser tab on the live studio; relative URLs work in goto()."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    yield page
    if any(r.failed for r in request.node.stash.get(reports_key, {}).values()):
        save_artifacts(page, request.node.nodeid)
    context.close()


@pytest.fixture
def owner_page(page: Page, cast: Cast) -> Page:  # noqa: F811 - the imported fixture
    """The page, signed in as the workspace's owner, on the home page."""
    log_in(page, cast.owner.username, PASSWORD)
    return page


def log_in(page: Page, username: str, password: str) -> None:
    """Sign in through the real login form, and wait to leave it."""
    page.goto(reverse("login"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(re.escape(reverse("login"))))


def save_artifacts(page: Page, nodeid: str) -> None:
    """A screenshot and the HTML of a failed test's page, named after the test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", nodeid)
    screenshot = ARTIFACTS / f"{stem}.png"
    page.screenshot(path=screenshot, full_page=True)
    (ARTIFACTS / f"{stem}.html").write_text(page.content())
    print(f"screenshot of the failed page: {screenshot}")
