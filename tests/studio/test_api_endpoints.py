"""REST API: batch endpoints and their deployment revisions."""

from __future__ import annotations

import itertools

import pytest

from studio.models import BatchDeployment, BatchEndpoint, EndpointState

from .test_api_support import api, api_url
from .test_endpoints_deployments import (
    make_code,
    make_custom_model,
    make_endpoint,
    make_script_deployment,
    make_worker_env,
)

WRITE_ROLES = [("owner", 201), ("contributor", 201), ("reader", 403), ("outsider", 404)]
READ_ROLES = [("owner", 200), ("contributor", 200), ("reader", 200), ("outsider", 404)]
ENDPOINTS = api_url("endpoint-list", "team")
_numbers = itertools.count()


def deployment_body(**fields: object) -> dict[str, object]:
    """A JSON deployment of the fixture scripts with the worker's own Python."""
    return {
        "name": "blue",
        "model": "scorer-model@latest",
        "code_path": str(make_code(f"api-code-{next(_numbers)}")),
        "scoring_script": "ok.py",
        "environment": "worker:1",
        "settings": {"mini_batch_size": 2, "resource_monitor_interval": 0},
        **fields,
    }


@pytest.fixture
def assets(cast):
    make_custom_model(cast.workspace)
    make_worker_env(cast.workspace)


@pytest.mark.parametrize(("who", "expected"), WRITE_ROLES)
def test_it_creates_an_endpoint_for_contributors(cast, who, expected):
    response = api(cast, who).post(
        ENDPOINTS, {"name": "scorer", "description": "fraud"}, format="json"
    )

    assert response.status_code == expected
    if expected == 201:
        body = response.json()
        assert (body["name"], body["state"], body["created_by"]) == (
            "scorer",
            "ready",
            who,
        )
        assert body["invoke"].endswith(api_url("endpoint-invoke", "team", "scorer"))
    else:
        assert not BatchEndpoint.objects.exists()


def test_it_refuses_a_name_in_use_with_409(cast):
    make_endpoint(cast.workspace, cast.owner)

    response = api(cast, "owner").post(ENDPOINTS, {"name": "scorer"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "name": ["batch endpoint 'scorer' already exists; choose another name"]
    }


def test_it_refuses_a_name_still_being_deleted_with_409(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    BatchEndpoint.objects.filter(pk=endpoint.pk).update(state=EndpointState.DELETING)

    response = api(cast, "owner").post(ENDPOINTS, {"name": "scorer"}, format="json")

    assert response.status_code == 409
    assert response.json()["name"] == [
        "batch endpoint 'scorer' is still being deleted; another name is needed"
        " until its deletion finishes"
    ]


def test_it_refuses_an_invalid_name_with_400(cast):
    response = api(cast, "owner").post(ENDPOINTS, {"name": "1x"}, format="json")

    assert response.status_code == 400
    assert "is not a valid endpoint name" in response.json()["name"][0]


@pytest.mark.parametrize(("who", "expected"), READ_ROLES)
def test_it_lists_and_shows_endpoints_to_members(cast, who, expected):
    make_endpoint(cast.workspace, cast.owner)
    make_endpoint(cast.other_workspace, cast.outsider, name="hidden")
    client = api(cast, who)

    listed = client.get(ENDPOINTS)
    shown = client.get(api_url("endpoint-detail", "team", "scorer"))

    assert (listed.status_code, shown.status_code) == (expected, expected)
    if expected == 200:
        assert [row["name"] for row in listed.json()["results"]] == ["scorer"]
        assert shown.json()["default_deployment"] == ""


def test_a_missing_endpoint_is_named_with_close_names(cast):
    make_endpoint(cast.workspace, cast.owner)

    response = api(cast, "reader").get(api_url("endpoint-detail", "team", "scorr"))

    assert response.status_code == 404
    assert response.json() == {
        "detail": "batch endpoint 'scorr' not found in workspace 'team';"
        " close names: scorer"
    }


@pytest.mark.parametrize(
    ("who", "expected"),
    [("owner", 202), ("contributor", 202), ("reader", 403), ("outsider", 404)],
)
def test_it_deletes_an_endpoint_in_the_background(
    cast, who, expected, django_capture_on_commit_callbacks
):
    make_endpoint(cast.workspace, cast.owner)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(cast, who).delete(api_url("endpoint-detail", "team", "scorer"))

    assert response.status_code == expected
    if expected == 202:
        assert response.json()["state"] == "deleting"
        assert len(callbacks) == 1
        callbacks[0]()
        assert not BatchEndpoint.objects.exists()
    else:
        assert BatchEndpoint.objects.get().state == EndpointState.READY


def test_it_refuses_to_delete_twice_with_409(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    BatchEndpoint.objects.filter(pk=endpoint.pk).update(state=EndpointState.DELETING)

    response = api(cast, "owner").delete(api_url("endpoint-detail", "team", "scorer"))

    assert response.status_code == 409
    assert response.json() == {
        "non_field_errors": ["batch endpoint 'scorer' is already being deleted"]
    }


@pytest.mark.parametrize(("who", "expected"), WRITE_ROLES)
def test_it_creates_deployment_revisions(cast, assets, who, expected):
    make_endpoint(cast.workspace, cast.owner)
    url = api_url("deployment-list", "team", "scorer")

    first = api(cast, who).post(url, deployment_body(), format="json")
    second = api(cast, who).post(
        url, deployment_body(settings={"mini_batch_size": 5}), format="json"
    )

    assert (first.status_code, second.status_code) == (expected, expected)
    if expected == 201:
        assert [first.json()["revision"], second.json()["revision"]] == [1, 2]
        assert second.json()["settings"]["mini_batch_size"] == "5"
        assert second.json()["model"] == "scorer-model:1"
        assert second.json()["environment"] == "worker:1"
        assert BatchEndpoint.objects.get().default_deployment == "blue"


def test_it_keeps_the_current_code_for_a_new_revision(cast, assets):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)

    response = api(cast, "owner").post(
        api_url("deployment-list", "team", "scorer"),
        {"name": "blue", "model": "scorer-model:1", "environment": "worker:1",
         "keep_code": True},
        format="json",
    )  # fmt: skip

    assert response.status_code == 201, response.content
    assert response.json()["revision"] == 2
    assert response.json()["scoring_script"] == "ok.py"


def test_it_refuses_a_custom_model_without_code(cast, assets):
    make_endpoint(cast.workspace, cast.owner)

    response = api(cast, "owner").post(
        api_url("deployment-list", "team", "scorer"),
        {"name": "blue", "model": "scorer-model:1"},
        format="json",
    )

    assert response.status_code == 400
    assert "no-code deployment" in json_text(response)
    assert not BatchDeployment.objects.exists()


def test_it_names_a_missing_model_with_close_names(cast, assets):
    make_endpoint(cast.workspace, cast.owner)

    response = api(cast, "owner").post(
        api_url("deployment-list", "team", "scorer"),
        deployment_body(model="scorer-modle:1"),
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "model": ["model 'scorer-modle:1' not found; close names: scorer-model"]
    }


def test_it_reports_a_bad_setting_on_its_field(cast, assets):
    make_endpoint(cast.workspace, cast.owner)

    response = api(cast, "owner").post(
        api_url("deployment-list", "team", "scorer"),
        deployment_body(settings={"max_retries": -3}),
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()) == ["max_retries"]


def test_it_shows_deployments_and_revisions(cast, assets):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)
    make_script_deployment(endpoint, cast.owner)
    client = api(cast, "reader")

    listed = client.get(api_url("deployment-list", "team", "scorer")).json()
    current = client.get(api_url("deployment-detail", "team", "scorer", "blue"))
    first = client.get(api_url("deployment-revision", "team", "scorer", "blue", 1))
    missing = client.get(api_url("deployment-revision", "team", "scorer", "blue", 9))
    unknown = client.get(api_url("deployment-detail", "team", "scorer", "bleu"))

    assert [(r["name"], r["revision"]) for r in listed["results"]] == [
        ("blue", 2),
        ("blue", 1),
    ]
    assert current.json()["revision"] == 2 and first.json()["revision"] == 1
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith(
        "batch deployment 'blue' revision 9 not found on endpoint 'scorer'"
    )
    assert unknown.json()["detail"] == (
        "batch deployment 'bleu' not found on endpoint 'scorer'; close names: blue"
    )


def test_deployments_of_a_missing_endpoint_are_404(cast):
    response = api(cast, "reader").get(api_url("deployment-list", "team", "nope"))

    assert response.status_code == 404
    assert response.json()["detail"].startswith("batch endpoint 'nope' not found")


@pytest.mark.parametrize(
    ("who", "expected"),
    [("owner", 200), ("contributor", 200), ("reader", 403), ("outsider", 404)],
)
def test_it_switches_the_default_deployment(cast, assets, who, expected):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner, name="blue")
    make_script_deployment(endpoint, cast.owner, name="green")

    response = api(cast, who).post(
        api_url("endpoint-default", "team", "scorer"),
        {"default_deployment": "green"},
        format="json",
    )

    assert response.status_code == expected
    endpoint.refresh_from_db()
    expected_default = "green" if expected == 200 else "blue"
    assert endpoint.default_deployment == expected_default


def test_it_refuses_an_unknown_default_deployment(cast, assets):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)

    response = api(cast, "owner").post(
        api_url("endpoint-default", "team", "scorer"),
        {"default_deployment": "green"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "default_deployment": [
            "batch deployment 'green' not found on endpoint 'scorer'"
        ]
    }


def json_text(response) -> str:
    return str(response.json())
