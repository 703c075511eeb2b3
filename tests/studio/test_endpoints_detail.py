"""The endpoint page: deployments with every revision, the default, recent jobs."""

from __future__ import annotations

from django.urls import reverse

from studio.models import Job, JobStatus

from .test_endpoints_deployments import make_endpoint, make_script_deployment

DETAIL = reverse("studio:endpoint-detail", args=["team", "scorer"])


def make_jobs(endpoint, deployment, count: int) -> None:
    for number in range(count):
        Job.objects.create(
            workspace=endpoint.workspace,
            name=f"job-{number:03d}",
            endpoint=endpoint,
            endpoint_name=endpoint.name,
            deployment=deployment,
            deployment_label=f"{deployment.name} r{deployment.revision}",
            status=JobStatus.COMPLETED,
            mini_batches_total=4,
            mini_batches_succeeded=4,
            items_succeeded=40,
        )


def test_it_shows_every_revision_and_marks_the_default(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner, name="blue")
    make_script_deployment(endpoint, cast.owner, name="blue")
    make_script_deployment(endpoint, cast.owner, name="green")

    response = cast.client("reader").get(DETAIL)

    body = response.content.decode()
    revisions = [(d.name, d.revision) for d in response.context["deployments"]]
    assert revisions == [("blue", 2), ("blue", 1), ("green", 1)]
    assert 'blue <span class="default-mark">default</span>' in body
    assert 'green <span class="default-mark">' not in body
    for name, revision in revisions:
        url = reverse(
            "studio:deployment-detail", args=["team", "scorer", name, revision]
        )
        assert url in body


def test_it_lists_recent_jobs_of_this_endpoint_only(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    deployment = make_script_deployment(endpoint, cast.owner)
    other = make_endpoint(cast.workspace, cast.owner, "other")
    make_jobs(endpoint, deployment, 12)
    Job.objects.create(
        workspace=cast.workspace, name="not-mine", endpoint=other, endpoint_name="other"
    )

    response = cast.client("reader").get(DETAIL)

    names = [job.name for job in response.context["jobs"]]
    assert len(names) == 10 and "not-mine" not in names
    assert reverse("studio:job-detail", args=["team", names[0]]) in (
        response.content.decode()
    )


def test_it_offers_invoke_and_changes_to_contributors_only(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)
    invoke = reverse("studio:endpoint-invoke", args=["team", "scorer"])
    delete = reverse("studio:endpoint-delete", args=["team", "scorer"])

    contributor_page = cast.client("contributor").get(DETAIL).content.decode()
    reader_page = cast.client("reader").get(DETAIL).content.decode()

    assert invoke in contributor_page and delete in contributor_page
    assert invoke not in reader_page and delete not in reader_page


def test_it_offers_no_invoke_before_the_first_deployment(cast):
    make_endpoint(cast.workspace, cast.owner)

    body = cast.client("contributor").get(DETAIL).content.decode()

    assert reverse("studio:endpoint-invoke", args=["team", "scorer"]) not in body
    assert reverse("studio:deployment-create", args=["team", "scorer"]) in body


def test_it_reads_the_page_in_a_fixed_number_of_queries(
    cast, django_assert_max_num_queries
):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    for name in ("blue", "blue", "green", "red"):
        deployment = make_script_deployment(endpoint, cast.owner, name=name)
    make_jobs(endpoint, deployment, 10)
    client = cast.client("reader")

    with django_assert_max_num_queries(6):
        response = client.get(DETAIL)

    assert response.status_code == 200
    assert len(response.context["jobs"]) == 10


def test_it_answers_404_for_an_endpoint_that_does_not_exist(cast):
    response = cast.client("reader").get(
        reverse("studio:endpoint-detail", args=["team", "nope"])
    )

    assert response.status_code == 404
