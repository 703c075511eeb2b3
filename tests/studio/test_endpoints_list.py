"""The endpoint list: each endpoint with its state and default deployment."""

from __future__ import annotations

from django.urls import reverse

from studio.models import BatchEndpoint, EndpointState

from .test_endpoints_deployments import make_endpoint, make_script_deployment

LIST = reverse("studio:endpoint-list", args=["team"])


def test_it_lists_endpoints_with_state_and_default_deployment(cast):
    scorer = make_endpoint(cast.workspace, cast.owner, "scorer")
    make_script_deployment(scorer, cast.owner, name="blue")
    make_script_deployment(scorer, cast.owner, name="blue")
    make_endpoint(cast.workspace, cast.owner, "empty")
    BatchEndpoint.objects.filter(name="empty").update(state=EndpointState.DELETING)
    make_endpoint(cast.other_workspace, cast.outsider, "hidden")

    response = cast.client("reader").get(LIST)

    rows = {e.name: e for e in response.context["page"].object_list}
    assert response.status_code == 200
    assert sorted(rows) == ["empty", "scorer"]
    assert rows["scorer"].default_deployment == "blue"
    assert rows["scorer"].default_revision == 2
    assert rows["scorer"].default_model == "scorer-model"
    assert rows["empty"].default_revision is None
    body = response.content.decode()
    assert "status-deleting" in body and "status-ready" in body
    assert reverse("studio:deployment-detail", args=["team", "scorer", "blue", 2]) in (
        body
    )


def test_it_offers_new_endpoint_to_contributors_only(cast):
    new = reverse("studio:endpoint-create", args=["team"])

    assert new in cast.client("contributor").get(LIST).content.decode()
    assert new not in cast.client("reader").get(LIST).content.decode()


def test_it_reads_the_list_in_a_fixed_number_of_queries(
    cast, django_assert_max_num_queries
):
    for number in range(6):
        endpoint = make_endpoint(cast.workspace, cast.owner, f"scorer-{number}")
        make_script_deployment(endpoint, cast.owner)
    client = cast.client("reader")

    with django_assert_max_num_queries(6):
        response = client.get(LIST)

    assert len(response.context["page"].object_list) == 6
