"""Every browser route refuses a POST without its CSRF token, and nothing changes."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern

from studio.models import (
    ApiToken,
    BatchDeployment,
    BatchEndpoint,
    DataAsset,
    Environment,
    Job,
    ModelAsset,
)
from studio.urls import studio_patterns
from tests.studio.test_jobs_support import make_endpoint, make_job

MODELS = (
    ApiToken,
    BatchDeployment,
    BatchEndpoint,
    DataAsset,
    Environment,
    Job,
    ModelAsset,
)


def fill(pattern: URLPattern, values: dict[str, object]) -> str:
    """A concrete path for `pattern`, its parameters taken from `values`."""
    route = str(pattern.pattern)
    for name in pattern.pattern.converters:
        for converter in ("slug", "int", "str", "path"):
            route = route.replace(f"<{converter}:{name}>", str(values[name]))
    return "/" + route


def snapshot() -> list[int]:
    return [model.objects.count() for model in MODELS] + [
        Job.objects.filter(status="canceled").count()
    ]


def test_every_browser_route_refuses_a_post_without_a_csrf_token(cast):
    endpoint = make_endpoint(cast.workspace)
    job = make_job(cast.workspace, status="running", endpoint=endpoint)
    token, _ = ApiToken.objects.issue(cast.owner, "ci")
    values = {
        "workspace": "team", "endpoint": endpoint.name, "name": job.name,
        "version": 1, "revision": 1, "token_id": token.pk,
    }  # fmt: skip
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.owner)
    before = snapshot()
    refused = []

    for pattern in studio_patterns:
        path = fill(pattern, values)
        response = client.post(path, {"name": "csrf-probe"})
        refused.append((path, response.status_code))

    assert [r for r in refused if r[1] != 403] == []
    assert len(refused) > 30
    assert snapshot() == before


@pytest.mark.parametrize("path", ["/login/", "/logout/"])
def test_signing_in_and_out_need_the_token_too(cast, path):
    client = Client(enforce_csrf_checks=True)

    response = client.post(path, {"username": "owner", "password": "x"})

    assert response.status_code == 403
