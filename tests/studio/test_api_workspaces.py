"""REST API: authentication and the workspaces a user belongs to."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from .test_api_support import api, api_url

LIST = api_url("workspace-list")


def test_it_lists_only_the_users_workspaces_with_their_role(cast):
    response = api(cast, "reader").get(LIST)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(row["name"], row["role"]) for row in rows] == [("team", "reader")]
    assert rows[0]["url"].endswith(api_url("workspace-detail", "team"))


def test_it_shows_a_workspace_to_a_member(cast):
    response = api(cast, "contributor").get(api_url("workspace-detail", "team"))

    assert response.status_code == 200
    assert response.json()["role"] == "contributor"


def test_it_hides_a_workspace_from_outsiders(cast):
    response = api(cast, "outsider").get(api_url("workspace-detail", "team"))

    assert response.status_code == 404
    assert response.json() == {"detail": "workspace 'team' not found"}


@pytest.mark.parametrize(
    "header",
    [None, "Bearer bst_wrong", "Bearer", "Token nonsense", "Bearer a b", "Bearer \xe9"],
)
def test_it_refuses_requests_without_a_valid_token(cast, header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(LIST)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "detail" in response.json()


def test_it_accepts_the_browser_session(cast):
    response = cast.client("reader").get(LIST)

    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["team"]
