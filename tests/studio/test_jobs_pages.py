"""The jobs list, a job's Overview page and its live status JSON."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from studio.models import Job, JobRun, JobStatus, RunInstance
from tests.studio.test_jobs_support import make_endpoint, make_job

READERS_AND_UP = [
    ("owner", 200),
    ("contributor", 200),
    ("reader", 200),
    ("outsider", 404),
]


def list_url(cast, **query) -> str:
    url = reverse("studio:job-list", args=[cast.workspace.name])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def job_url(view: str, job: Job) -> str:
    return reverse(f"studio:{view}", args=[job.workspace.name, job.name])


def make_many(cast, count: int, **fields) -> list[Job]:
    endpoint = fields.pop("endpoint", None) or make_endpoint(cast.workspace)
    return Job.objects.bulk_create(
        Job(
            workspace=cast.workspace,
            name=f"{endpoint.name}-{number:05d}",
            endpoint=endpoint,
            endpoint_name=endpoint.name,
            deployment_label="blue r1",
            job_dir=f"/datastore/jobs/{endpoint.name}-{number:05d}",
            **fields,
        )
        for number in range(count)
    )


# The list


@pytest.mark.parametrize(("who", "expected"), READERS_AND_UP)
def test_it_shows_the_list_to_members_only(cast, who, expected):
    make_job(cast.workspace, name="visible-job")

    response = cast.client(who).get(list_url(cast))

    assert response.status_code == expected
    if expected == 200:
        assert b"visible-job" in response.content


def test_it_sends_anonymous_visitors_to_log_in(cast, client):
    response = client.get(list_url(cast))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_lists_jobs_newest_first_with_their_facts(cast):
    endpoint = make_endpoint(cast.workspace, "fraud")
    make_job(cast.workspace, name="older-job", endpoint=endpoint)
    make_job(
        cast.workspace,
        name="newer-job",
        endpoint=endpoint,
        status=JobStatus.FAILED,
        created_by=cast.contributor,
        deployment_label="blue r2",
    )

    response = cast.client("reader").get(list_url(cast))

    text = response.content.decode()
    assert text.index("newer-job") < text.index("older-job")
    for fact in ("fraud", "blue r2", "contributor", "status-failed", "Duration"):
        assert fact in text


def test_it_shows_a_live_progress_bar_for_running_jobs(cast):
    job = make_job(
        cast.workspace,
        status=JobStatus.RUNNING,
        mini_batches_total=10,
        mini_batches_succeeded=3,
        mini_batches_failed=1,
    )

    response = cast.client("reader").get(list_url(cast))

    text = response.content.decode()
    assert f'data-job-status-url="{job_url("job-status", job)}"' in text
    assert '<span data-count="mini_batches_done">4</span>' in text
    assert '<span data-field="percent">40</span>%' in text
    # 4 of 10 done in the 40 s since it started: about a minute to go.
    assert '<span data-field="eta">1 min' in text
    assert "studio/js/jobs.js" in text


def test_it_does_not_poll_finished_jobs(cast):
    make_job(cast.workspace, status=JobStatus.COMPLETED, mini_batches_total=2)

    response = cast.client("reader").get(list_url(cast))

    assert b"data-job-status-url" not in response.content


def test_it_pages_the_list_fifty_jobs_at_a_time(cast):
    jobs = make_many(cast, 51)

    first = cast.client("reader").get(list_url(cast))
    second = cast.client("reader").get(list_url(cast, page=2))

    assert [j.name for j in first.context["page_obj"]] == [
        j.name for j in reversed(jobs[1:])
    ]
    assert [j.name for j in second.context["page_obj"]] == [jobs[0].name]
    assert b"Page 1 of 2" in first.content


def test_it_filters_by_status_and_endpoint(cast):
    fraud = make_endpoint(cast.workspace, "fraud")
    churn = make_endpoint(cast.workspace, "churn")
    make_job(cast.workspace, name="fraud-failed", endpoint=fraud, status="failed")
    make_job(cast.workspace, name="fraud-done", endpoint=fraud, status="completed")
    make_job(cast.workspace, name="churn-failed", endpoint=churn, status="failed")

    response = cast.client("reader").get(
        list_url(cast, status="failed", endpoint="fraud")
    )

    assert [j.name for j in response.context["page_obj"]] == ["fraud-failed"]


def test_it_keeps_the_filters_in_page_links(cast):
    make_many(cast, 51, status=JobStatus.FAILED)

    response = cast.client("reader").get(list_url(cast, status="failed"))

    assert b'href="?status=failed&amp;page=2"' in response.content


def test_it_reports_an_unknown_filter_value_and_ignores_it(cast):
    make_job(cast.workspace, name="any-job")

    response = cast.client("reader").get(list_url(cast, status="exploded"))

    assert response.status_code == 200
    assert b"exploded is not one of the available choices" in response.content
    assert b"any-job" in response.content


def test_it_lists_a_page_in_the_same_few_queries_however_many_jobs(
    cast, django_assert_max_num_queries
):
    for endpoint_name in ("fraud", "churn", "spam"):
        make_many(
            cast,
            40,
            endpoint=make_endpoint(cast.workspace, endpoint_name),
            created_by=cast.owner,
            status=JobStatus.RUNNING,
            mini_batches_total=10,
        )
    Job.objects.filter(pk__in=Job.objects.values("pk")[:30]).update(
        created_by=cast.contributor
    )
    client = cast.client("reader")

    # session, user, membership, endpoint names, count, the page's rows
    with django_assert_max_num_queries(6):
        response = client.get(list_url(cast))

    assert len(response.context["page_obj"]) == 50


# A job's page


@pytest.mark.parametrize(("who", "expected"), READERS_AND_UP)
def test_it_shows_a_job_to_members_only(cast, who, expected):
    job = make_job(cast.workspace)

    response = cast.client(who).get(job_url("job-detail", job))

    assert response.status_code == expected


def test_it_shows_a_jobs_overview(cast):
    endpoint = make_endpoint(cast.workspace, "fraud")
    job = make_job(
        cast.workspace,
        endpoint=endpoint,
        status=JobStatus.RUNNING,
        deployment_label="blue r3",
        input={"data_asset": "claims:2"},
        settings={"mini_batch_size": "5", "max_retries": 3, "timeout": 30.0},
        overrides={"retry_settings.timeout": "30", "mini_batch_size": "5"},
        tags={"team": "risk"},
        created_by=cast.owner,
        mini_batches_total=8,
        mini_batches_succeeded=2,
        items_succeeded=10,
        items_failed=1,
    )

    response = cast.client("reader").get(job_url("job-detail", job))

    text = response.content.decode()
    for fact in ("fraud", "blue r3", "claims:2", "team=risk", "by owner", "ETA"):
        assert fact in text
    assert '<td data-count="items_succeeded">10</td>' in text
    assert '<td data-count="items_failed">1</td>' in text
    assert '<span data-field="percent">25</span>%' in text
    assert text.count("overridden for this job") == 2
    assert '<tr class="overridden"><th>timeout</th>' in text
    assert f'data-job-status-url="{job_url("job-status", job)}"' in text


def test_it_names_the_node_a_job_ran_on(cast):
    job = make_job(cast.workspace, status=JobStatus.COMPLETED, node="node-a", runs=1)

    text = cast.client("reader").get(job_url("job-detail", job)).content.decode()

    assert '<dd class="job-nodes">node-a</dd>' in text


def test_it_names_every_node_of_a_spread_job_and_the_lost_ones(cast):
    job = make_job(cast.workspace, status=JobStatus.RUNNING, node="node-a", runs=2)
    earlier = JobRun.objects.create(job=job, run=1, total=4, tries=3, stopped=True)
    latest = JobRun.objects.create(job=job, run=2, total=4, tries=3)
    now = timezone.now()
    RunInstance.objects.create(
        job_run=earlier, node="node-z", number=0, heartbeat_at=now
    )
    for number, node in enumerate(("node-a", "node-b", "node-c")):
        RunInstance.objects.create(
            job_run=latest, node=node, number=number, heartbeat_at=now,
            lost=node == "node-c",
        )  # fmt: skip

    text = cast.client("reader").get(job_url("job-detail", job)).content.decode()

    nodes = text.split('<dd class="job-nodes">')[1].split("</dd>")[0]
    assert nodes == (
        "node-a (orchestrator), node-b (helper), node-c (helper, lost: its"
        " mini-batches ran again elsewhere)"
    )


def test_it_shows_the_cause_of_a_failure_and_the_log_to_open(cast):
    job = make_job(
        cast.workspace,
        status=JobStatus.FAILED,
        error="init() failed: FileNotFoundError: model.pkl not found",
        error_log="logs/user/error/node-a/process000.txt",
    )

    response = cast.client("reader").get(job_url("job-detail", job))

    text = response.content.decode()
    assert "init() failed: FileNotFoundError: model.pkl not found" in text
    assert "<code>logs/user/error/node-a/process000.txt</code>" in text
    opens_the_log = (
        f'{job_url("job-outputs", job)}?path=logs/user/error/node-a/process000.txt"'
    )
    assert opens_the_log in text
    assert "data-job-status-url" not in text


@pytest.mark.parametrize(
    ("who", "status", "offered"),
    [
        ("owner", JobStatus.RUNNING, True),
        ("contributor", JobStatus.QUEUED, True),
        ("reader", JobStatus.RUNNING, False),
        ("owner", JobStatus.COMPLETED, False),
        ("contributor", JobStatus.CANCELED, False),
    ],
)
def test_it_offers_cancel_to_contributors_on_active_jobs(cast, who, status, offered):
    job = make_job(cast.workspace, status=status)

    response = cast.client(who).get(job_url("job-detail", job))

    assert (job_url("job-cancel", job).encode() in response.content) is offered


# Live status


@pytest.mark.parametrize(("who", "expected"), READERS_AND_UP)
def test_it_gives_live_status_to_members_only(cast, who, expected):
    job = make_job(cast.workspace)

    response = cast.client(who).get(job_url("job-status", job))

    assert response.status_code == expected


def test_it_gives_live_status_as_json(cast):
    job = make_job(
        cast.workspace,
        status=JobStatus.RUNNING,
        mini_batches_total=10,
        mini_batches_succeeded=4,
        mini_batches_failed=1,
        items_succeeded=40,
        items_failed=2,
    )

    response = cast.client("reader").get(job_url("job-status", job))

    data = response.json()
    assert data["status"] == "running"
    assert data["terminal"] is False
    assert data["percent"] == 50
    assert data["counts"] == {
        "mini_batches_total": 10,
        "mini_batches_done": 5,
        "mini_batches_succeeded": 4,
        "mini_batches_failed": 1,
        "items_succeeded": 40,
        "items_failed": 2,
    }
    # 5 of 10 done in 40 s: about 40 s to go.
    assert 39 <= data["eta_seconds"] <= 42
    assert data["error"] == ""
    assert "no-cache" in response["Cache-Control"]


def test_it_says_when_a_job_has_ended_and_why(cast):
    job = make_job(
        cast.workspace,
        status=JobStatus.FAILED,
        error="3 items failed, more than error_threshold 2",
        error_log="logs/user/error.txt",
    )

    data = cast.client("reader").get(job_url("job-status", job)).json()

    assert data["terminal"] is True
    assert data["eta_seconds"] is None
    assert data["error"] == "3 items failed, more than error_threshold 2"
    assert data["error_log"] == "logs/user/error.txt"
