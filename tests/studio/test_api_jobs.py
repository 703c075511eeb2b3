"""REST API: the jobs list with filters, a job, its progress, and cancel."""

from __future__ import annotations

import pytest

from studio.models import Job, JobStatus

from .test_api_support import api, api_url
from .test_jobs_support import make_endpoint, make_job

READ_ROLES = [("owner", 200), ("contributor", 200), ("reader", 200), ("outsider", 404),
              ("anonymous", 401)]  # fmt: skip
JOBS = api_url("job-list", "team")


@pytest.mark.parametrize(("who", "expected"), READ_ROLES)
def test_it_lists_the_workspaces_jobs_newest_first(cast, who, expected):
    make_job(cast.workspace, name="first")
    make_job(cast.workspace, name="second")
    make_job(cast.other_workspace, name="hidden")

    response = api(cast, who).get(JOBS)

    assert response.status_code == expected
    if expected == 200:
        assert [row["name"] for row in response.json()["results"]] == [
            "second",
            "first",
        ]


def test_it_filters_jobs_by_status_and_endpoint(cast):
    scorer = make_endpoint(cast.workspace, "scorer")
    make_job(cast.workspace, name="done", endpoint=scorer, status=JobStatus.COMPLETED)
    make_job(cast.workspace, name="waiting", endpoint=scorer)
    make_job(cast.workspace, name="other", status=JobStatus.COMPLETED)
    client = api(cast, "reader")

    by_status = client.get(JOBS, {"status": "completed"}).json()["results"]
    by_both = client.get(JOBS, {"status": "completed", "endpoint": "scorer"}).json()

    assert sorted(row["name"] for row in by_status) == ["done", "other"]
    assert [row["name"] for row in by_both["results"]] == ["done"]


def test_it_refuses_an_unknown_status_filter(cast):
    response = api(cast, "reader").get(JOBS, {"status": "sleeping"})

    assert response.status_code == 400
    assert response.json() == {"status": ['"sleeping" is not a valid choice.']}


@pytest.mark.parametrize(("who", "expected"), READ_ROLES)
def test_it_shows_a_job_and_its_progress(cast, who, expected):
    make_job(
        cast.workspace,
        name="busy",
        status=JobStatus.RUNNING,
        mini_batches_total=4,
        mini_batches_succeeded=1,
        mini_batches_running=2,
        node="node-a",
        tags={"run": "nightly"},
    )
    client = api(cast, who)

    shown = client.get(api_url("job-detail", "team", "busy"))
    progress = client.get(api_url("job-progress", "team", "busy"))

    assert (shown.status_code, progress.status_code) == (expected, expected)
    if expected == 200:
        assert shown.json()["tags"] == {"run": "nightly"}
        assert shown.json()["percent"] == 25
        assert (shown.json()["node"], shown.json()["mini_batches_running"]) == (
            "node-a",
            2,
        )
        body = progress.json()
        assert (body["status"], body["percent"], body["terminal"]) == (
            "running",
            25,
            False,
        )
        assert body["counts"]["mini_batches_done"] == 1
        assert body["eta_seconds"] > 0


def test_a_missing_job_is_named_with_close_names(cast):
    make_job(cast.workspace, name="nightly-run")

    response = api(cast, "reader").get(api_url("job-detail", "team", "nightly-rn"))

    assert response.status_code == 404
    assert response.json()["detail"] == (
        "job 'nightly-rn' not found in workspace 'team'; close names: nightly-run"
    )


@pytest.mark.parametrize(
    ("who", "expected"),
    [("owner", 200), ("contributor", 200), ("reader", 403), ("outsider", 404)],
)
def test_contributors_cancel_a_queued_job_at_once(cast, who, expected):
    make_job(cast.workspace, name="waiting")

    response = api(cast, who).post(api_url("job-cancel", "team", "waiting"))

    assert response.status_code == expected
    status = Job.objects.get().status
    if expected == 200:
        assert response.json()["status"] == "canceled" == status
    else:
        assert status == JobStatus.QUEUED


def test_cancel_asks_a_running_job_to_stop(cast):
    make_job(cast.workspace, name="busy", status=JobStatus.RUNNING)

    response = api(cast, "owner").post(api_url("job-cancel", "team", "busy"))

    assert response.status_code == 200
    assert response.json()["cancel_requested"] is True
    assert Job.objects.get().cancel_requested


def test_cancel_of_an_ended_job_is_a_conflict(cast):
    make_job(cast.workspace, name="done", status=JobStatus.COMPLETED)

    response = api(cast, "owner").post(api_url("job-cancel", "team", "done"))

    assert response.status_code == 409
    assert response.json() == {
        "non_field_errors": [
            "job 'done' already ended (completed); only queued or running jobs can"
            " be canceled"
        ]
    }


def test_the_jobs_list_costs_a_fixed_number_of_queries(
    cast, django_assert_max_num_queries
):
    for number in range(5):
        make_job(cast.workspace, name=f"job-{number}")
    client = api(cast, "reader")

    with django_assert_max_num_queries(5):
        assert client.get(JOBS).status_code == 200


@pytest.fixture
def job_folder(cast, tmp_path):
    folder = tmp_path / "job-folder"
    (folder / "logs" / "user").mkdir(parents=True)
    (folder / ".state").mkdir()
    (folder / "logs" / "job_progress_overview.txt").write_text("one\ntwo\n")
    (folder / "logs" / "user" / "error.txt").write_text("")
    make_job(cast.workspace, name="folder-job", job_dir=str(folder))
    return folder


def test_it_lists_the_job_folder(cast, job_folder):
    response = api(cast, "reader").get(api_url("job-files", "team", "folder-job"))

    assert response.status_code == 200
    body = response.json()
    assert [(e["path"], e["is_dir"]) for e in body["entries"]] == [
        ("logs", True),
        ("logs/user", True),
        ("logs/user/error.txt", False),
        ("logs/job_progress_overview.txt", False),
    ]
    assert body["truncated"] is False


def test_it_says_when_the_listing_is_cut(cast, job_folder, monkeypatch):
    monkeypatch.setattr("studio.api.views.FILES_LIMIT", 2)

    body = api(cast, "reader").get(api_url("job-files", "team", "folder-job")).json()

    assert len(body["entries"]) == 2 and body["truncated"] is True


def test_it_follows_a_log_with_byte_offsets(cast, job_folder):
    client = api(cast, "reader")
    url = api_url("job-log", "team", "folder-job")
    log = "logs/job_progress_overview.txt"

    first = client.get(url, {"path": log, "offset": 0}).json()
    (job_folder / log).write_text("one\ntwo\nthree\npart")
    second = client.get(url, {"path": log, "offset": first["end"]}).json()

    assert first == {"path": log, "text": "one\ntwo\n", "start": 0, "end": 8, "size": 8}
    assert (second["text"], second["start"], second["end"]) == ("three\n", 8, 14)


def test_it_opens_a_log_at_its_end_by_default(cast, job_folder):
    response = api(cast, "reader").get(
        api_url("job-log", "team", "folder-job"),
        {"path": "logs/job_progress_overview.txt", "limit": 4},
    )

    assert response.json()["text"] == "two\n"


@pytest.mark.parametrize(
    ("query", "expected", "message"),
    [
        ({"path": "../secret"}, 404, "'../secret' is not a path inside the job folder"),
        ({"path": "logs/none.txt"}, 404, "no file 'logs/none.txt' in the job folder"),
        ({"path": "logs"}, 404, "'logs' is a folder, not a file"),
        ({}, 400, None),
        ({"path": "logs/user/error.txt", "offset": -1}, 400, None),
    ],
)
def test_it_refuses_paths_outside_the_job_folder(
    cast, job_folder, query, expected, message
):
    response = api(cast, "reader").get(api_url("job-log", "team", "folder-job"), query)

    assert response.status_code == expected
    if message:
        assert response.json() == {"detail": message}


@pytest.mark.parametrize(("who", "expected"), READ_ROLES)
def test_the_job_folder_is_for_members(cast, job_folder, who, expected):
    client = api(cast, who)

    files = client.get(api_url("job-files", "team", "folder-job"))
    log = client.get(
        api_url("job-log", "team", "folder-job"), {"path": "logs/user/error.txt"}
    )

    assert (files.status_code, log.status_code) == (expected, expected)
