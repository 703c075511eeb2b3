"""Creating a batch endpoint: name rules, names in use or still being deleted."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studio.models import BatchEndpoint, EndpointState

from .test_endpoints_deployments import make_endpoint

CREATE = reverse("studio:endpoint-create", args=["team"])


def test_it_creates_an_endpoint_and_opens_its_page(cast):
    response = cast.client("contributor").post(
        CREATE, {"name": "fraud-v2", "description": "Nightly fraud scores"}
    )

    endpoint = BatchEndpoint.objects.get(workspace=cast.workspace, name="fraud-v2")
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "studio:endpoint-detail", args=["team", "fraud-v2"]
    )
    assert endpoint.state == EndpointState.READY
    assert endpoint.description == "Nightly fraud scores"
    assert endpoint.created_by == cast.contributor


def test_it_shows_the_form(cast):
    response = cast.client("contributor").get(CREATE)

    assert response.status_code == 200
    assert b'name="name"' in response.content


@pytest.mark.parametrize(
    "name", ["ab", "1abc", "a_bc", "abc!", "a" * 33, "-abc", "a bc"]
)
def test_it_refuses_a_name_against_the_rules(cast, name):
    response = cast.client("contributor").post(CREATE, {"name": name})

    errors = response.context["form"].errors["name"]
    assert response.status_code == 200
    assert errors == [
        f"{name!r} is not a valid endpoint name: 3 to 32 characters, starting with"
        " a letter, then letters, digits or '-'"
    ]
    assert not BatchEndpoint.objects.exists()


@pytest.mark.parametrize("name", ["abc", "A-1", "a" * 32, "Scorer-2024"])
def test_it_accepts_a_name_within_the_rules(cast, name):
    response = cast.client("contributor").post(CREATE, {"name": name})

    assert response.status_code == 302
    assert BatchEndpoint.objects.filter(name=name).exists()


def test_it_refuses_a_name_already_used(cast):
    make_endpoint(cast.workspace, cast.owner, "scorer")

    response = cast.client("contributor").post(CREATE, {"name": "scorer"})

    assert response.context["form"].errors["name"] == [
        "batch endpoint 'scorer' already exists; choose another name"
    ]
    assert BatchEndpoint.objects.count() == 1


def test_it_refuses_a_name_still_being_deleted(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner, "scorer")
    cast.client("owner").post(
        reverse("studio:endpoint-delete", args=["team", "scorer"])
    )

    response = cast.client("contributor").post(CREATE, {"name": "scorer"})

    assert BatchEndpoint.objects.get(pk=endpoint.pk).state == EndpointState.DELETING
    assert response.context["form"].errors["name"] == [
        "batch endpoint 'scorer' is still being deleted; another name is needed"
        " until its deletion finishes"
    ]


def test_the_same_name_may_be_used_in_another_workspace(cast):
    make_endpoint(cast.other_workspace, cast.outsider, "scorer")

    response = cast.client("contributor").post(CREATE, {"name": "scorer"})

    assert response.status_code == 302
    assert BatchEndpoint.objects.filter(name="scorer").count() == 2
