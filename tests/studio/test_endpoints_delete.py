"""Deleting a batch endpoint: `deleting` at once, gone once its task has run."""

from __future__ import annotations

from django.urls import reverse

from studio.models import BatchDeployment, BatchEndpoint, EndpointState, Job, JobStatus

from .test_endpoints_deployments import make_endpoint, make_script_deployment

DELETE = reverse("studio:endpoint-delete", args=["team", "scorer"])
CREATE = reverse("studio:endpoint-create", args=["team"])


def test_it_marks_the_endpoint_deleting_and_leaves_the_rest_to_a_task(
    cast, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(cast.workspace, cast.owner)

    with django_capture_on_commit_callbacks() as callbacks:
        response = cast.client("contributor").post(DELETE)

    assert response.status_code == 302
    assert response["Location"] == reverse("studio:endpoint-list", args=["team"])
    assert BatchEndpoint.objects.get(pk=endpoint.pk).state == EndpointState.DELETING
    assert len(callbacks) == 1


def test_the_endpoint_is_gone_and_its_name_free_once_deletion_finishes(
    cast, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)

    with django_capture_on_commit_callbacks(execute=True):
        cast.client("contributor").post(DELETE)
    response = cast.client("contributor").post(CREATE, {"name": "scorer"})

    assert not BatchEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not BatchDeployment.objects.filter(endpoint_id=endpoint.pk).exists()
    assert response.status_code == 302
    assert BatchEndpoint.objects.get(name="scorer").state == EndpointState.READY


def test_jobs_keep_their_history_and_queued_ones_are_canceled(
    cast, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    deployment = make_script_deployment(endpoint, cast.owner)
    common = {
        "workspace": cast.workspace,
        "endpoint": endpoint,
        "endpoint_name": "scorer",
        "deployment": deployment,
        "deployment_label": "blue r1",
    }
    done = Job.objects.create(name="done-job", status=JobStatus.COMPLETED, **common)
    waiting = Job.objects.create(name="waiting-job", **common)

    with django_capture_on_commit_callbacks(execute=True):
        cast.client("contributor").post(DELETE)

    done.refresh_from_db()
    waiting.refresh_from_db()
    assert done.status == JobStatus.COMPLETED and done.endpoint_name == "scorer"
    assert done.deployment_label == "blue r1" and done.endpoint is None
    assert waiting.status == JobStatus.CANCELED
    assert waiting.error == "canceled: batch endpoint 'scorer' was deleted"


def test_it_refuses_to_delete_twice(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    client = cast.client("contributor")
    client.post(DELETE, follow=True)

    response = client.post(DELETE, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "batch endpoint 'scorer' is already being deleted"
    ]
    assert BatchEndpoint.objects.get(pk=endpoint.pk).state == EndpointState.DELETING


def test_it_refuses_new_deployments_and_jobs_while_deleting(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)
    client = cast.client("contributor")
    client.post(DELETE)

    response = client.post(
        reverse("studio:endpoint-invoke", args=["team", "scorer"]),
        {"data_asset": "anything:1"},
    )

    assert response.context["form"].non_field_errors() == [
        "batch endpoint 'scorer' is being deleted"
    ]
    assert not Job.objects.exists()


def test_it_only_deletes_on_post(cast):
    make_endpoint(cast.workspace, cast.owner)

    response = cast.client("owner").get(DELETE)

    assert response.status_code == 405
    assert BatchEndpoint.objects.get(name="scorer").state == EndpointState.READY
