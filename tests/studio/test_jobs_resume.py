"""Resuming a failed or canceled job from its checkpoint: page, API and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.urls import reverse

from studio.models import Job, JobStatus
from studio.services.invoke import invoke
from studio.services.jobs import resume_job
from tests.studio.test_api_support import api, api_url
from tests.studio.test_command_support import run, run_json
from tests.studio.test_jobs_delivery import processed_mini_batches
from tests.studio.test_jobs_support import deploy_script, make_job

FILES = 12
NAMES = [f"file_{n:03d}.txt" for n in range(FILES)]
# file_006.txt is in mini-batch 3 of 6 (two files each).
BAD_FILE, BAD_BATCH = "file_006.txt", 3


@pytest.fixture
def failed_job(cast, tmp_path, django_capture_on_commit_callbacks) -> Job:
    """A real job that failed on mini-batch 3 while a marker file existed.

    mini_batch_error_threshold 0 ends it at the first failed mini-batch:
    mini-batches 0-3 are committed (3 as failed), maybe 4 too. The marker is
    gone when the fixture returns: the cause is fixed.
    """
    marker = tmp_path / "broken"
    marker.touch()
    endpoint = deploy_script(
        cast.workspace,
        cast.owner,
        "slow_until_fixed.py",
        files=FILES,
        mini_batch_size=2,
        mini_batch_error_threshold=0,
        max_retries=1,
        environment_variables={"BAD_FILE": BAD_FILE, "BROKEN_MARKER": str(marker)},
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED, job.error
    assert "1 mini-batches failed, more than mini_batch_error_threshold 0" in job.error
    marker.unlink()
    return job


def with_checkpoint(cast, tmp_path, **fields) -> Job:
    """A job row whose job folder holds a checkpoint (no real run behind it)."""
    job_dir = tmp_path / "datastore" / "jobs" / "unfinished"
    (job_dir / ".state").mkdir(parents=True)
    (job_dir / ".state" / "checkpoint.json").write_text("{}\n")
    return make_job(cast.workspace, job_dir=str(job_dir), **fields)


def resume_url(job: Job) -> str:
    return api_url("job-resume", job.workspace.name, job.name)


def page_resume_url(job: Job) -> str:
    return reverse("studio:job-resume", args=[job.workspace.name, job.name])


def output_lines(job: Job) -> list[str]:
    return Path(job.job_dir, "outputs/predictions.csv").read_text().splitlines()


def committed(job: Job) -> int:
    """How many mini-batches the job folder's checkpoint says are committed."""
    return json.loads(Path(job.job_dir, ".state/checkpoint.json").read_text())[
        "next_index"
    ]


def assert_resumed_only_the_uncommitted(job: Job, before, kept: int) -> None:
    """The job completed; mini-batches 0..kept-1 not run again, rows once in order."""
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.error, job.finished_at is not None, job.runs) == ("", True, 2)
    assert (job.mini_batches_total, job.mini_batches_succeeded) == (6, 5)
    assert (job.mini_batches_failed, job.items_succeeded, job.items_failed) == (
        1,
        10,
        2,
    )
    assert output_lines(job) == [n for n in NAMES if n not in (BAD_FILE, NAMES[7])]
    after = processed_mini_batches(job)
    assert kept > BAD_BATCH, "the failed mini-batch is committed (as failed)"
    assert [after[i] for i in range(kept)] == [before[i] for i in range(kept)]
    assert [after[i] - before[i] for i in range(kept, 6)] == [1] * (6 - kept)
    driver = Path(job.job_dir, "azureml-logs/70_driver_log.txt").read_text()
    assert f"Resuming: mini-batches 0-{kept - 1} of 6 were committed" in driver
    assert not Path(job.job_dir, ".state").exists()


def test_the_api_resumes_a_failed_job_and_only_its_uncommitted_mini_batches_run(
    cast, failed_job, django_capture_on_commit_callbacks
):
    before, kept = processed_mini_batches(failed_job), committed(failed_job)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api(cast, "contributor").post(
            resume_url(failed_job),
            {"overrides": {"mini_batch_error_threshold": -1}},
            format="json",
        )
        body = response.json()

    assert response.status_code == 202, body
    assert (body["status"], body["error"], body["finished_at"]) == ("queued", "", None)
    assert body["mini_batches_succeeded"] == failed_job.mini_batches_succeeded
    assert len(callbacks) == 1
    assert_resumed_only_the_uncommitted(failed_job, before, kept)
    assert failed_job.overrides == {"mini_batch_error_threshold": -1}
    assert failed_job.settings["mini_batch_error_threshold"] == -1


def test_the_job_page_resumes_a_failed_job_with_changed_settings(
    cast, failed_job, django_capture_on_commit_callbacks
):
    before, kept = processed_mini_batches(failed_job), committed(failed_job)
    client = cast.client("contributor")
    page = client.get(failed_job.get_absolute_url())
    assert b"Resume job" in page.content
    assert b'name="mini_batch_error_threshold"' in page.content

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            page_resume_url(failed_job),
            {"mini_batch_error_threshold": "-1", "max_retries": ""},
            follow=True,
        )

    assert response.redirect_chain[-1][0] == failed_job.get_absolute_url()
    assert b"resumed: only the mini-batches it had not committed run again" in (
        response.content
    )
    assert_resumed_only_the_uncommitted(failed_job, before, kept)
    assert failed_job.overrides == {"mini_batch_error_threshold": "-1"}


def test_the_cli_resumes_a_job_with_set_overrides(cast, tmp_path):
    job = with_checkpoint(
        cast, tmp_path, status=JobStatus.CANCELED,
        overrides={"max_retries": 1}, error="canceled by request",
    )  # fmt: skip

    shown = run_json(
        "job", "resume", job.name, "--set", "error_threshold=5",
        "--set", "retry_settings.timeout=90", user="contributor",
    )  # fmt: skip

    assert (shown["status"], shown["error"], shown["cancel_requested"]) == (
        "queued",
        "",
        False,
    )
    assert shown["overrides"] == {
        "max_retries": 1,
        "error_threshold": "5",
        "retry_settings.timeout": "90",
    }
    assert (shown["settings"]["error_threshold"], shown["settings"]["timeout"]) == (
        5,
        90,
    )


@pytest.mark.parametrize(
    ("who", "expected"), [("owner", 202), ("contributor", 202), ("reader", 403),
                          ("outsider", 404)],
)  # fmt: skip
def test_only_contributors_and_owners_resume(cast, tmp_path, who, expected):
    job = with_checkpoint(cast, tmp_path, status=JobStatus.FAILED)

    response = api(cast, who).post(resume_url(job))

    assert response.status_code == expected
    job.refresh_from_db()
    assert job.status == (JobStatus.QUEUED if expected == 202 else JobStatus.FAILED)


@pytest.mark.parametrize(("who", "expected"), [("reader", 403), ("outsider", 404)])
def test_the_page_refuses_resume_below_contributor(cast, tmp_path, who, expected):
    job = with_checkpoint(cast, tmp_path, status=JobStatus.FAILED)

    response = cast.client(who).post(page_resume_url(job))

    assert response.status_code == expected
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_the_resume_button_is_for_contributors_on_resumable_jobs(cast, tmp_path):
    resumable = with_checkpoint(cast, tmp_path, status=JobStatus.FAILED)
    no_checkpoint = make_job(cast.workspace, status=JobStatus.FAILED)
    done = make_job(cast.workspace, status=JobStatus.COMPLETED)

    def shows_resume(who: str, job: Job) -> bool:
        return b"Resume job" in cast.client(who).get(job.get_absolute_url()).content

    assert shows_resume("contributor", resumable)
    assert not shows_resume("reader", resumable)
    assert not shows_resume("contributor", no_checkpoint)
    assert not shows_resume("contributor", done)


def test_a_completed_job_has_nothing_to_resume(cast):
    job = make_job(cast.workspace, name="done", status=JobStatus.COMPLETED)

    response = api(cast, "owner").post(resume_url(job))

    assert response.status_code == 409
    assert response.json() == {
        "non_field_errors": [
            "job 'done' is completed: it has nothing to resume; only failed or"
            " canceled jobs can be resumed"
        ]
    }


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_job_that_has_not_ended_cannot_be_resumed(cast, tmp_path, status):
    job = with_checkpoint(cast, tmp_path, name="busy", status=status)

    response = api(cast, "owner").post(resume_url(job))

    assert response.status_code == 409
    assert response.json()["non_field_errors"] == [
        f"job 'busy' is {status}, not ended; only failed or canceled jobs can be"
        " resumed"
    ]


def test_a_job_without_a_checkpoint_is_refused(cast):
    job = make_job(cast.workspace, name="early", status=JobStatus.FAILED)

    response = api(cast, "owner").post(resume_url(job))

    assert response.status_code == 409
    assert response.json()["non_field_errors"] == [
        "job 'early' has nothing to resume: its job folder keeps no checkpoint (it"
        " never started scoring); invoke the endpoint again"
    ]
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_a_job_whose_deployment_revision_was_deleted_cannot_resume(cast, tmp_path):
    job = with_checkpoint(
        cast, tmp_path, name="orphan", status=JobStatus.FAILED, deployment=None,
        deployment_label="blue r3",
    )  # fmt: skip

    response = api(cast, "owner").post(resume_url(job))

    assert response.status_code == 409
    assert response.json()["non_field_errors"] == [
        "job 'orphan' cannot resume: its deployment revision blue r3 was deleted;"
        " invoke the endpoint again"
    ]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"mini_batch_size": 5}, "mini_batch_size",
         "mini_batch_size cannot change when resuming: the mini-batches already"
         " committed were made with the job's own value; invoke the endpoint"
         " again to score with another"),
        ({"output_file_name": "other.csv"}, "output_file_name",
         "output_file_name cannot change when resuming"),
        ({"max_retries": -2}, "max_retries", "max_retries"),
        ({"colour": "blue"}, "non_field_errors",
         "colour: cannot be overridden for one job"),
    ],
)  # fmt: skip
def test_it_refuses_settings_a_resume_cannot_take(
    cast, tmp_path, overrides, field, message
):
    job = with_checkpoint(cast, tmp_path, status=JobStatus.FAILED)

    response = api(cast, "owner").post(
        resume_url(job), {"overrides": overrides}, format="json"
    )

    assert response.status_code == 400
    assert message in response.json()[field][0]
    job.refresh_from_db()
    assert (job.status, job.overrides) == (JobStatus.FAILED, {})


def test_two_resumes_at_once_queue_the_job_once(
    cast, tmp_path, django_capture_on_commit_callbacks
):
    job = with_checkpoint(cast, tmp_path, name="twice", status=JobStatus.FAILED)
    late = Job.objects.get(pk=job.pk)

    with django_capture_on_commit_callbacks() as callbacks:
        resume_job(job)
        with pytest.raises(ValidationError) as caught:
            resume_job(late)

    assert caught.value.messages == [
        "job 'twice' was resumed or changed at the same moment; it is queued now"
    ]
    assert len(callbacks) == 1


def test_the_cli_says_why_a_job_cannot_be_resumed(cast):
    job = make_job(cast.workspace, name="done", status=JobStatus.COMPLETED)

    with pytest.raises(CommandError) as caught:
        run("job", "resume", job.name)
    with pytest.raises(CommandError, match="needs the contributor role"):
        run("job", "resume", job.name, user="reader")

    assert str(caught.value) == (
        "job 'done' is completed: it has nothing to resume; only failed or canceled"
        " jobs can be resumed"
    )
