"""Canceling a job: queued ones at once, running ones by stopping their scoring."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest
from django.db import connection
from django.urls import reverse
from django_q.conf import Conf

from studio.models import Job, JobStatus
from studio.services.invoke import invoke
from studio.tasks import run_job_task
from tests.studio.test_jobs_support import (  # noqa: F401 - fixture
    deploy_script,
    file_database,
    make_job,
    wait_for,
)


def cancel_url(job: Job) -> str:
    return reverse("studio:job-cancel", args=[job.workspace.name, job.name])


@pytest.mark.parametrize("who", ["owner", "contributor"])
def test_it_cancels_a_queued_job_at_once(cast, who):
    job = make_job(cast.workspace, status=JobStatus.QUEUED)

    response = cast.client(who).post(cancel_url(job), follow=True)

    assert response.redirect_chain[-1][0] == job.get_absolute_url()
    assert f"Job {job.name} canceled.".encode() in response.content
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED
    assert job.finished_at is not None
    assert job.error == "canceled by request"


def test_a_canceled_queued_job_never_runs_when_its_task_arrives(cast):
    endpoint = deploy_script(cast.workspace, cast.owner, "ok.py")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Conf, "SYNC", False)  # enqueued, not run
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    cast.client("contributor").post(cancel_url(job))

    run_job_task(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED
    assert job.started_at is None
    assert not Path(job.job_dir, "logs").exists()


@pytest.mark.parametrize(("who", "expected"), [("reader", 403), ("outsider", 404)])
def test_it_refuses_cancel_below_contributor(cast, who, expected):
    job = make_job(cast.workspace, status=JobStatus.QUEUED)

    response = cast.client(who).post(cancel_url(job))

    assert response.status_code == expected
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_it_cancels_only_by_post(cast):
    job = make_job(cast.workspace, status=JobStatus.QUEUED)

    response = cast.client("owner").get(cancel_url(job))

    assert response.status_code == 405
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_it_says_a_finished_job_cannot_be_canceled(cast, status):
    job = make_job(cast.workspace, status=status)

    response = cast.client("owner").post(cancel_url(job), follow=True)

    assert (
        f"job &#x27;{job.name}&#x27; already ended ({status}); only queued or"
        " running jobs can be canceled"
    ).encode() in response.content
    job.refresh_from_db()
    assert job.status == status


@pytest.mark.usefixtures("file_database")
def test_it_stops_a_running_job_and_its_scoring_processes(cast, monkeypatch):
    endpoint = deploy_script(
        cast.workspace,
        cast.owner,
        "hangs.py",
        max_concurrency_per_instance=2,
        environment_variables={"HANG_FILE": "file_000.txt"},
    )
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueued; a thread runs the task
    job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    worker = threading.Thread(target=_deliver, args=(job.pk,))
    worker.start()
    hosts = wait_for(_scoring_hosts, what="scoring processes to start")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", what="claim")

    response = cast.client("contributor").post(cancel_url(job), follow=True)

    assert b"Cancel requested" in response.content
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == JobStatus.CANCELED,
        what="the job to end canceled",
    )
    worker.join(timeout=30)
    assert not worker.is_alive()
    job.refresh_from_db()
    assert job.error == "canceled by request"
    assert job.finished_at is not None
    assert "canceled" in Path(job.job_dir, "logs/job_result.txt").read_text()
    assert not any(_alive(pid) for pid in hosts)


def _deliver(job_id: int) -> None:
    try:
        run_job_task(job_id)
    finally:
        connection.close()


def _scoring_hosts() -> list[int]:
    return [p.pid for p in psutil.Process().children(recursive=True)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
