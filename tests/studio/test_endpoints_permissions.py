"""Who may do what in the endpoints area: every page and action, every role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from studio.models import BatchDeployment, BatchEndpoint, EndpointState, Job

from .test_endpoints_deployments import (
    deployment_post,
    make_code,
    make_data,
    make_endpoint,
    make_script_deployment,
)

PAGES = [
    # url name, args, may a reader look?
    ("endpoint-list", ["team"], True),
    ("endpoint-create", ["team"], False),
    ("endpoint-detail", ["team", "scorer"], True),
    ("deployment-create", ["team", "scorer"], False),
    ("deployment-detail", ["team", "scorer", "blue", 1], True),
    ("endpoint-invoke", ["team", "scorer"], False),
]
ROLES = ["owner", "contributor", "reader", "outsider"]


def _endpoint() -> BatchEndpoint:
    return BatchEndpoint.objects.get(name="scorer")


ACTIONS: list[tuple[str, list[str], Callable[[], dict], Callable[[], bool]]] = [
    # url name, args, form data, whether the action took effect
    (
        "endpoint-create",
        ["team"],
        lambda: {"name": "fresh"},
        lambda: BatchEndpoint.objects.filter(name="fresh").exists(),
    ),
    (
        "endpoint-delete",
        ["team", "scorer"],
        lambda: {},
        lambda: _endpoint().state == EndpointState.DELETING,
    ),
    (
        "endpoint-set-default",
        ["team", "scorer"],
        lambda: {"deployment": "green"},
        lambda: _endpoint().default_deployment == "green",
    ),
    (
        "deployment-create",
        ["team", "scorer"],
        lambda: deployment_post(
            name="red",
            model="scorer-model:1",
            code_path=str(make_code("code-red")),
            scoring_script="ok.py",
            environment="worker:1",
        ),
        lambda: BatchDeployment.objects.filter(name="red").exists(),
    ),
    (
        "endpoint-invoke",
        ["team", "scorer"],
        lambda: {"data_asset": "inputs:1"},
        lambda: Job.objects.exists(),
    ),
]


@pytest.fixture
def scene(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner, name="blue")
    make_script_deployment(endpoint, cast.owner, name="green")
    make_data(cast.workspace)
    return cast


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("url_name", "args", "reader_may"), PAGES)
def test_each_page_answers_each_role(scene, role, url_name, args, reader_may):
    response = scene.client(role).get(reverse(f"studio:{url_name}", args=args))

    expected = {
        "owner": 200,
        "contributor": 200,
        "reader": 200 if reader_may else 403,
        "outsider": 404,
    }
    assert response.status_code == expected[role]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("url_name", "args", "data", "took_effect"), ACTIONS)
def test_each_action_is_for_contributors_and_owners_only(
    scene, role, url_name, args, data, took_effect
):
    response = scene.client(role).post(reverse(f"studio:{url_name}", args=args), data())

    expected = {"owner": 302, "contributor": 302, "reader": 403, "outsider": 404}
    assert response.status_code == expected[role]
    assert took_effect() is (role in ("owner", "contributor"))


@pytest.mark.parametrize(
    ("url_name", "args", "method"),
    [(name, args, "get") for name, args, _ in PAGES]
    + [(name, args, "post") for name, args, _, _ in ACTIONS],
)
def test_everything_needs_a_login(cast, url_name, args, method):
    url = reverse(f"studio:{url_name}", args=args)

    response: Any = getattr(Client(), method)(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
