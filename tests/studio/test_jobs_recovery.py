"""No job lost when its worker dies: heartbeats, taking stale jobs back, resuming."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.tasks import async_task

from studio import tasks
from studio.models import Job, JobStatus
from studio.services.invoke import invoke
from studio.services.jobs import (
    recover_stale_jobs,
    requeue_lost_queued_jobs,
    requeue_stale_job,
)
from studio.tasks import run_job_task
from tests.studio.test_cluster import descendants, qcluster
from tests.studio.test_jobs_delivery import processed_mini_batches
from tests.studio.test_jobs_support import (  # noqa: F401 - fixture
    deploy_script,
    file_database,
    make_job,
    wait_for,
)

FILES = 12
NAMES = [f"file_{n:03d}.txt" for n in range(FILES)]


def running_job(cast, beat_s_ago: float | None, **fields) -> Job:
    """A job row a worker claimed once, its last heartbeat `beat_s_ago` s ago."""
    beat = (
        None if beat_s_ago is None else timezone.now() - timedelta(seconds=beat_s_ago)
    )
    return make_job(
        cast.workspace, status=JobStatus.RUNNING, runs=1, heartbeat_at=beat, **fields
    )


def committed(job: Job) -> int:
    """Mini-batches the job folder's checkpoint holds as committed to the output."""
    try:
        text = Path(job.job_dir, ".state/checkpoint.json").read_text()
    except FileNotFoundError:
        return 0
    return json.loads(text)["next_index"]


def output_lines(job: Job) -> list[str]:
    path = Path(job.job_dir, "outputs/predictions.csv")
    return path.read_text().splitlines() if path.exists() else []


def test_it_takes_back_running_jobs_whose_heartbeat_stopped(
    cast, django_capture_on_commit_callbacks
):
    stale = running_job(cast, beat_s_ago=61)
    alive = running_job(cast, beat_s_ago=5)

    with django_capture_on_commit_callbacks() as callbacks:
        recovered = tasks.recover_stale_jobs()

    assert recovered == [stale.name]
    assert len(callbacks) == 1, "one run_job_task enqueued, for the stale job"
    stale.refresh_from_db()
    assert (stale.status, stale.runs) == (JobStatus.QUEUED, 1)
    assert Job.objects.get(pk=alive.pk).status == JobStatus.RUNNING


def test_the_stale_threshold_comes_from_settings_or_the_caller(cast, settings):
    job = running_job(cast, beat_s_ago=10)
    settings.STUDIO_JOB_STALE_S = 30
    assert recover_stale_jobs() == []
    settings.STUDIO_JOB_STALE_S = 5
    assert recover_stale_jobs(stale_s=60) == []

    assert recover_stale_jobs() == [job.name]


def test_a_job_from_before_heartbeats_counts_from_its_start(cast):
    old = running_job(cast, beat_s_ago=None)  # make_job: started 40 s ago
    recent = running_job(cast, beat_s_ago=None, started_at=timezone.now())

    assert recover_stale_jobs(stale_s=30) == [old.name]
    assert Job.objects.get(pk=recent.pk).status == JobStatus.RUNNING


def test_of_two_recoverers_only_one_takes_the_job(cast):
    job = running_job(cast, beat_s_ago=120)
    late = Job.objects.get(pk=job.pk)

    assert requeue_stale_job(job)
    assert not requeue_stale_job(late)
    Job.objects.get(pk=job.pk).claim()  # a worker picked it up again
    assert not requeue_stale_job(late, stale_s=0)


def test_a_stale_job_whose_cancel_was_requested_ends_canceled(
    cast, django_capture_on_commit_callbacks
):
    job = running_job(cast, beat_s_ago=120, cancel_requested=True)

    with django_capture_on_commit_callbacks() as callbacks:
        assert recover_stale_jobs() == []

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED
    assert job.finished_at is not None
    assert job.error.startswith("canceled by request")
    assert not callbacks


def queued_job(cast, queued_s_ago: float, **fields) -> Job:
    """A queued job row created `queued_s_ago` seconds ago."""
    job = make_job(cast.workspace, **fields)
    created = timezone.now() - timedelta(seconds=queued_s_ago)
    Job.objects.filter(pk=job.pk).update(created_at=created)  # not auto_now_add
    return job


def enqueued_jobs() -> list[int]:
    """The job ids of the run_job_task tasks waiting in the ORM broker's queue."""
    return [
        task.task["args"][0]
        for task in OrmQ.objects.all()
        if task.task["func"] == "studio.tasks.run_job_task"
    ]


def test_a_queued_job_whose_task_was_lost_is_enqueued_again(
    cast, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueue only
    lost = queued_job(cast, queued_s_ago=61)
    recent = queued_job(cast, queued_s_ago=5)
    running_job(cast, beat_s_ago=5)
    assert get_broker().queue_size() == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.recover_stale_jobs() == [lost.name]

    assert enqueued_jobs() == [lost.pk]
    with django_capture_on_commit_callbacks(execute=True):
        # Its task is waiting now: nothing is lost, nothing more enqueued.
        assert tasks.recover_stale_jobs() == []
    assert enqueued_jobs() == [lost.pk]
    assert Job.objects.get(pk=recent.pk).status == JobStatus.QUEUED


def test_queued_jobs_are_left_alone_while_tasks_wait_in_the_queue(
    cast, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", False)
    behind = queued_job(cast, queued_s_ago=120)
    first = queued_job(cast, queued_s_ago=120)
    async_task("studio.tasks.run_job_task", first.pk)

    with django_capture_on_commit_callbacks(execute=True):
        assert requeue_lost_queued_jobs() == []
        assert requeue_lost_queued_jobs(stale_s=3600) == []
    assert enqueued_jobs() == [first.pk]

    OrmQ.objects.all().delete()  # as if the broker restarted empty
    with django_capture_on_commit_callbacks(execute=True):
        assert sorted(requeue_lost_queued_jobs()) == sorted([behind.name, first.name])
    assert sorted(enqueued_jobs()) == sorted([behind.pk, first.pk])


def test_a_lost_task_is_run_and_a_duplicate_finds_the_job_claimed(
    cast, django_capture_on_commit_callbacks
):
    endpoint = deploy_script(cast.workspace, cast.owner, "ok.py", mini_batch_size=1)
    with django_capture_on_commit_callbacks():  # the invoke's task: lost
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    Job.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(seconds=61)
    )

    # Inline tasks (the fixture's sync mode): the recovery runs the job.
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.recover_stale_jobs() == [job.name]
    run_job_task(job.pk)  # the lost task, delivered late after all

    job.refresh_from_db()
    assert (job.status, job.runs, job.mini_batches_succeeded) == ("completed", 1, 6)
    assert processed_mini_batches(job) == {i: 1 for i in range(6)}


def test_the_recovery_is_scheduled_every_minute(db):
    schedule = Schedule.objects.get(func="studio.tasks.recover_stale_jobs")

    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        Schedule.MINUTES,
        1,
        -1,
    )


def test_a_run_that_lost_its_job_writes_nothing_more(cast):
    job = make_job(cast.workspace)
    assert job.claim()
    assert (job.runs, job.heartbeat_at) == (1, job.started_at)
    Job.objects.filter(pk=job.pk).update(runs=F("runs") + 1)  # taken and claimed

    assert not job.beat()
    assert not job.record_progress(6, 6, 0, 6, 0)
    assert not job.finish(JobStatus.COMPLETED)

    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.mini_batches_succeeded, row.runs) == ("running", 0, 2)


def test_a_task_delivered_again_after_its_worker_died_runs_the_job(cast, monkeypatch):
    endpoint = deploy_script(cast.workspace, cast.owner, "ok.py", mini_batch_size=1)
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueue only
    job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    assert job.claim()  # by a worker that then died before it scored anything
    stopped = timezone.now() - timedelta(seconds=61)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=stopped)

    run_job_task(job.pk)  # django-q's redelivery

    job.refresh_from_db()
    assert (job.status, job.runs, job.mini_batches_succeeded) == ("completed", 2, 6)
    assert job.heartbeat_at > job.started_at
    assert processed_mini_batches(job) == {i: 1 for i in range(6)}


def test_a_task_delivered_again_leaves_a_job_with_a_live_heartbeat_alone(cast):
    job = running_job(cast, beat_s_ago=1)

    run_job_task(job.pk)

    job.refresh_from_db()
    assert (job.status, job.runs) == (JobStatus.RUNNING, 1)


@pytest.mark.usefixtures("file_database")
def test_a_run_whose_job_was_taken_over_stops_and_leaves_the_row_alone(
    cast, monkeypatch
):
    endpoint = deploy_script(
        cast.workspace, cast.owner, "slow_until_fixed.py", files=FILES,
        mini_batch_size=1, environment_variables={"SLEEP_S": "0.3"},
    )  # fmt: skip
    monkeypatch.setattr(Conf, "SYNC", False)
    job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    worker = threading.Thread(target=_deliver, args=(job.pk,))
    worker.start()
    first_beat = wait_for(
        lambda: Job.objects.filter(pk=job.pk, status="running").first(), what="claim"
    ).heartbeat_at
    wait_for(
        lambda: Job.objects.get(pk=job.pk).heartbeat_at > first_beat,
        what="a heartbeat from the running job",
    )

    # As if a recoverer had judged it stale and another worker claimed it.
    Job.objects.filter(pk=job.pk).update(runs=F("runs") + 1)
    worker.join(timeout=30)

    assert not worker.is_alive()
    job.refresh_from_db()
    assert (job.status, job.runs, job.finished_at) == ("running", 2, None)
    assert "canceled" in Path(job.job_dir, "logs/job_result.txt").read_text()
    assert Path(job.job_dir, ".state/checkpoint.json").exists(), "resumable"


def _deliver(job_id: int) -> None:
    try:
        run_job_task(job_id)
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.usefixtures("file_database")
def test_a_job_whose_cluster_was_killed_resumes_on_a_new_one_losing_nothing(
    cast, tmp_path, monkeypatch
):
    endpoint = deploy_script(
        cast.workspace, cast.owner, "slow_until_fixed.py", files=FILES,
        mini_batch_size=1, max_concurrency_per_instance=2,
        environment_variables={"SLEEP_S": "0.3"},
    )  # fmt: skip
    monkeypatch.setattr(Conf, "SYNC", False)  # clusters run the tasks
    seen: dict[int, tuple[int, str]] = {}
    try:
        with qcluster(tmp_path, tmp_path / "first.log") as first:
            job = invoke(endpoint, cast.contributor, data_asset="texts:1")

            def committed_some() -> bool:
                seen.update(descendants(first.pid))
                return len(output_lines(job)) >= 4 and committed(job) >= 2

            wait_for(committed_some, timeout=60, what="committed mini-batches")
            os.killpg(first.pid, signal.SIGKILL)  # the whole cluster, no goodbye
            first.wait()
        before, kept = processed_mini_batches(job), committed(job)
        assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING
        assert 2 <= kept < FILES

        with qcluster(tmp_path, tmp_path / "second.log"):
            # The schedule would do this a minute after the heartbeat stopped.
            wait_for(lambda: tasks.recover_stale_jobs(stale_s=1), what="recovery")
            wait_for(
                lambda: Job.objects.get(pk=job.pk).status in JobStatus.TERMINAL,
                timeout=90,
                what="the resumed job to end",
            )
    finally:
        _kill_leftovers(seen)

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.runs, job.error, job.mini_batches_total) == (2, "", FILES)
    assert (job.mini_batches_succeeded, job.mini_batches_failed) == (FILES, 0)
    assert (job.items_succeeded, job.items_failed) == (FILES, 0)
    assert output_lines(job) == NAMES, "every input's row once, in order"
    after = processed_mini_batches(job)
    assert all(after[i] == before[i] for i in range(kept)), "committed work re-ran"
    assert all(after[i] >= 1 for i in range(FILES))


def _kill_leftovers(pids: dict[int, tuple[int, str]]) -> None:
    """Scoring processes of the killed cluster die with it; make sure of it."""
    for pid, (_, command) in pids.items():
        try:
            process = psutil.Process(pid)
            if " ".join(process.cmdline()) == command:  # not a reused id
                process.kill()
        except psutil.NoSuchProcess:
            continue
