"""Smoke test in a real browser: sign in, see the workspaces, open one."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from tests.e2e.conftest import log_in
from tests.studio.conftest import PASSWORD, Cast

pytestmark = pytest.mark.e2e


def test_it_signs_in_through_the_form_and_lists_the_workspaces(page: Page, cast: Cast):
    log_in(page, cast.owner.username, PASSWORD)

    expect(page).to_have_url(re.compile(re.escape(reverse("studio:home")) + "$"))
    expect(page.get_by_role("link", name=cast.workspace.name)).to_be_visible()
    expect(page.get_by_role("link", name=cast.other_workspace.name)).to_have_count(0)


def test_it_opens_the_workspace_page(owner_page: Page, cast: Cast):
    owner_page.get_by_role("link", name=cast.workspace.name).click()

    expect(owner_page).to_have_url(
        re.compile(re.escape(cast.workspace.get_absolute_url()) + "$")
    )
    heading = owner_page.get_by_role("heading", level=1)
    expect(heading).to_have_text(cast.workspace.name)
    expect(owner_page.get_by_text("your role: owner")).to_be_visible()
