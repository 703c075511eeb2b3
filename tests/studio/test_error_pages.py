"""Refusals reach the user: 404 and 403 pages say which resource or role."""

from __future__ import annotations

import pytest


@pytest.fixture
def production(settings):
    settings.DEBUG = False


def test_it_names_the_missing_endpoint(cast, production):
    response = cast.client("reader").get("/w/team/endpoints/nope/")

    assert response.status_code == 404
    assert "batch endpoint &#x27;nope&#x27; not found" in response.content.decode()


def test_it_says_which_role_is_needed(cast, production):
    response = cast.client("reader").get("/w/team/endpoints/-/new/")

    assert response.status_code == 403
    assert "needs the contributor role" in response.content.decode()


def test_an_outsider_learns_nothing_about_the_workspace(cast, production):
    response = cast.client("outsider").get("/w/team/")

    assert response.status_code == 404
    assert "workspace &#x27;team&#x27; not found" in response.content.decode()
