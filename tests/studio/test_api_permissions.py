"""REST API: every workspace route refuses anonymous callers, bad tokens, outsiders."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from .test_api_support import api, api_url

ROUTES = [
    ("get", api_url("model-list", "team")),
    ("post", api_url("model-list", "team")),
    ("get", api_url("model-detail", "team", "m")),
    ("get", api_url("model-versions", "team", "m")),
    ("get", api_url("model-version", "team", "m", 1)),
    ("get", api_url("data-list", "team")),
    ("post", api_url("data-list", "team")),
    ("get", api_url("environment-list", "team")),
    ("post", api_url("environment-list", "team")),
    ("get", api_url("endpoint-list", "team")),
    ("post", api_url("endpoint-list", "team")),
    ("get", api_url("endpoint-detail", "team", "scorer")),
    ("delete", api_url("endpoint-detail", "team", "scorer")),
    ("post", api_url("endpoint-invoke", "team", "scorer")),
    ("post", api_url("endpoint-default", "team", "scorer")),
    ("get", api_url("deployment-list", "team", "scorer")),
    ("post", api_url("deployment-list", "team", "scorer")),
    ("get", api_url("deployment-detail", "team", "scorer", "blue")),
    ("get", api_url("deployment-revision", "team", "scorer", "blue", 1)),
    ("get", api_url("job-list", "team")),
    ("get", api_url("job-detail", "team", "job-1")),
    ("post", api_url("job-cancel", "team", "job-1")),
    ("get", api_url("job-progress", "team", "job-1")),
    ("get", api_url("job-files", "team", "job-1")),
    ("get", api_url("job-log", "team", "job-1")),
]


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_it_asks_anonymous_callers_to_authenticate(db, method, url):
    response = getattr(APIClient(), method)(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_it_refuses_a_bad_token(db, method, url):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer bst_not-a-real-token")

    assert getattr(client, method)(url).status_code == 401


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_outsiders_get_404_whatever_exists(cast, method, url):
    response = getattr(api(cast, "outsider"), method)(url, {}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "workspace 'team' not found"}


@pytest.mark.parametrize(
    ("method", "url"), [route for route in ROUTES if route[0] != "get"]
)
def test_readers_may_not_write(cast, method, url):
    response = getattr(api(cast, "reader"), method)(url, {}, format="json")

    assert response.status_code == 403
    assert "needs the contributor role" in response.json()["detail"]
