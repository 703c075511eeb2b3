"""Running jobs from their django-q task: outcomes, and at-least-once delivery."""

from __future__ import annotations

import csv
import threading
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django_q.conf import Conf

from studio.models import Job, JobStatus
from studio.services.invoke import invoke
from studio.tasks import run_job_task
from tests.studio.test_jobs_support import (  # noqa: F401 - fixture
    deploy_script,
    file_database,
    make_job,
)

FILES = 6


def processed_mini_batches(job: Job) -> Counter:
    """How often each mini-batch appears in processed_mini-batches.csv."""
    path = Path(job.job_dir, "logs/sys/job_report/processed_mini-batches.csv")
    with path.open(newline="") as handle:
        return Counter(int(row["mini_batch"]) for row in csv.DictReader(handle))


def assert_ran_once(job: Job) -> None:
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.mini_batches_succeeded == job.mini_batches_total == FILES
    jobs_root = Path(job.job_dir).parent
    assert [p.name for p in jobs_root.iterdir()] == [job.name]
    assert processed_mini_batches(job) == Counter(range(FILES))
    output = Path(job.job_dir, "outputs/predictions.csv").read_text().splitlines()
    assert len(output) == FILES


def test_it_runs_a_job_and_records_its_counts(cast, django_capture_on_commit_callbacks):
    endpoint = deploy_script(cast.workspace, cast.owner, "ok.py", mini_batch_size=1)

    with django_capture_on_commit_callbacks(execute=True):
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")

    assert_ran_once(job)
    assert job.items_succeeded == FILES and job.items_failed == 0
    assert job.started_at <= job.finished_at
    assert job.error == ""


def test_it_records_the_cause_and_log_when_a_job_fails(
    cast, django_capture_on_commit_callbacks
):
    endpoint = deploy_script(cast.workspace, cast.owner, "bad_init.py")

    with django_capture_on_commit_callbacks(execute=True):
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "model.pkl not found in the model folder" in job.error
    assert job.error_log.startswith("logs/user/error/node-a/")
    assert Path(job.job_dir, job.error_log).is_file()


@pytest.mark.usefixtures("file_database")
def test_it_runs_a_job_once_when_its_task_is_delivered_twice_at_once(cast, monkeypatch):
    endpoint = deploy_script(cast.workspace, cast.owner, "ok.py", mini_batch_size=1)
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueue only; the threads deliver
    job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    both_ready = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            both_ready.wait()
            run_job_task(job.pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=deliver) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert not errors
    assert_ran_once(job)


def test_it_ignores_a_task_delivered_again_after_the_job_ended(
    cast, django_capture_on_commit_callbacks
):
    endpoint = deploy_script(cast.workspace, cast.owner, "ok.py", mini_batch_size=1)
    with django_capture_on_commit_callbacks(execute=True):
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    job.refresh_from_db()
    finished_at = job.finished_at

    run_job_task(job.pk)

    assert_ran_once(job)
    assert job.finished_at == finished_at


def test_it_ignores_a_task_whose_job_was_deleted(db):
    assert run_job_task(987654) is None
    assert not Job.objects.exists()


def test_it_fails_a_job_whose_deployment_revision_was_deleted(cast):
    job = make_job(cast.workspace, deployment=None, deployment_label="blue r4")

    run_job_task(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == (
        "deployment revision blue r4 was deleted before the job started"
    )
