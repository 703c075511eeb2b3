"""Running jobs through the engine; cancel, resume, and recovery from dead workers."""

from __future__ import annotations

import logging
import shutil
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.tasks import async_task

from scoring_engine import (
    EngineError,
    JobSpec,
    Progress,
    SpecError,
    apply_overrides,
    run_job,
)
from scoring_engine.config import OVERRIDABLE

from .. import storage
from ..models import Job, JobStatus
from ..nodes import this_node
from . import instances
from .endpoints import deployment_spec, setting_error

logger = logging.getLogger(__name__)

# Kept by the engine in a job folder while its job is unfinished (DESIGN
# section 7, resume); a run given `resume=True` goes on from it.
CHECKPOINT = Path(".state", "checkpoint.json")
# The committed mini-batches and output were made with these; a resumed job
# keeps them (the engine refuses another partition).
FIXED_ON_RESUME = ("mini_batch_size", "output_action", "output_file_name")


def cancel_job(job: Job) -> None:
    """Cancel a queued job at once; ask a running one to stop.

    A running job's orchestrator sees the request within about a second,
    stops its scoring processes and ends the job `canceled`. Raises
    ValidationError when the job has already ended.
    """
    # Conditional updates: a job claimed by a worker between the two is
    # still caught by the second, and a queued job canceled here is never
    # claimed, because claiming needs status queued.
    if Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELED,
        finished_at=timezone.now(),
        error="canceled by request",
    ):
        job.refresh_from_db()
        return
    if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        cancel_requested=True
    ):
        job.cancel_requested = True
        return
    job.refresh_from_db()
    raise ValidationError(
        f"job '{job.name}' already ended ({job.status}); only queued or running"
        " jobs can be canceled"
    )


def can_resume(job: Job) -> bool:
    """Whether `resume_job` takes the job: failed or canceled, with a checkpoint."""
    return job.status in JobStatus.RESUMABLE and _has_checkpoint(job)


def resume_job(job: Job, overrides: Mapping[str, Any] | None = None) -> None:
    """Queue a failed or canceled job again; only what it had not committed runs.

    `overrides` (error_threshold, mini_batch_error_threshold, max_retries,
    timeout, ...) are merged into the job's own; the settings that shaped
    its committed output cannot change. Counts are kept until the new run
    reports. Raises ValidationError: a conflict when the job is not failed
    or canceled or has nothing to resume, else naming the bad setting.
    """
    if job.status not in JobStatus.RESUMABLE:
        state = (
            "completed: it has nothing to resume"
            if job.is_terminal
            else (f"{job.status}, not ended")
        )
        raise ValidationError(
            f"job '{job.name}' is {state}; only failed or canceled jobs can be resumed",
            code="conflict",
        )
    if not _has_checkpoint(job):
        raise ValidationError(
            f"job '{job.name}' has nothing to resume: its job folder keeps no"
            " checkpoint (it never started scoring); invoke the endpoint again",
            code="conflict",
        )
    merged = {**job.overrides, **_resume_overrides(overrides or {})}
    settings_now = _effective_settings(job, merged)
    with transaction.atomic():
        resumed = Job.objects.filter(pk=job.pk, status__in=JobStatus.RESUMABLE).update(
            status=JobStatus.QUEUED,
            error="",
            error_log="",
            cancel_requested=False,
            finished_at=None,
            overrides=merged,
            settings=settings_now,
        )
        if not resumed:
            job.refresh_from_db()
            raise ValidationError(
                f"job '{job.name}' was resumed or changed at the same moment; it is"
                f" {job.status} now",
                code="conflict",
            )
        enqueue_job(job.pk)
    job.refresh_from_db()


def _resume_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    for key in overrides:
        setting = OVERRIDABLE.get(key, key)
        if setting in FIXED_ON_RESUME:
            raise ValidationError(
                {
                    setting: f"{setting} cannot change when resuming: the mini-batches"
                    " already committed were made with the job's own value; invoke"
                    " the endpoint again to score with another"
                }
            )
    return dict(overrides)


def _effective_settings(job: Job, overrides: Mapping[str, Any]) -> dict[str, Any]:
    if job.deployment is None:
        raise ValidationError(
            f"job '{job.name}' cannot resume: its deployment revision"
            f" {job.deployment_label} was deleted; invoke the endpoint again",
            code="conflict",
        )
    try:
        spec = apply_overrides(deployment_spec(job.deployment), overrides)
    except SpecError as exc:
        raise setting_error(exc) from exc
    return spec.settings.as_dict()


def _has_checkpoint(job: Job) -> bool:
    return bool(job.job_dir) and (Path(job.job_dir) / CHECKPOINT).is_file()


def stale_cutoff(stale_s: float | None = None) -> datetime:
    """Heartbeats older than this are stale: STUDIO_JOB_STALE_S by default."""
    if stale_s is None:
        stale_s = settings.STUDIO_JOB_STALE_S
    return timezone.now() - timedelta(seconds=stale_s)


def requeue_stale_job(job: Job, stale_s: float | None = None) -> bool:
    """Take a running job back from a worker that stopped heartbeating.

    running -> queued, so the next claim resumes it from its checkpoint; a
    job whose cancel was requested ends canceled instead. The update only
    applies while the heartbeat is still stale, so of two recoverers one
    wins. True when this call took the job back to queued.
    """
    stale = Job.objects.stale(stale_cutoff(stale_s)).filter(pk=job.pk, runs=job.runs)
    if stale.filter(cancel_requested=True).update(
        status=JobStatus.CANCELED,
        finished_at=timezone.now(),
        error="canceled by request (its worker stopped before it could stop)",
    ):
        logger.warning("job %s: worker lost while canceling; canceled", job.name)
        return False
    if not stale.update(status=JobStatus.QUEUED):
        return False
    logger.warning(
        "job %s: no heartbeat from its worker since %s; queued again to resume",
        job.name,
        job.heartbeat_at or job.started_at,
    )
    return True


def recover_stale_jobs(stale_s: float | None = None) -> list[str]:
    """Requeue and enqueue every running job whose worker stopped; their names."""
    recovered = []
    for job in Job.objects.stale(stale_cutoff(stale_s)).only(
        "name", "runs", "heartbeat_at", "started_at"
    ):
        if requeue_stale_job(job, stale_s):
            recovered.append(job.name)
            enqueue_job(job.pk)
    return recovered


def requeue_lost_queued_jobs(stale_s: float | None = None) -> list[str]:
    """Enqueue again the queued jobs whose task the broker lost; their names.

    The Redis broker keeps no copy of a task once it was handed out, and one
    restarted without persistence forgets what it held: such a job would
    stay queued for ever. A job queued longer than the stale threshold while
    the broker's queue is empty gets a new task.

    Duplicates are harmless (the claim is a conditional UPDATE, the extra
    task finds the job claimed and returns), which is why `created_at` is
    good enough as the time the job was queued: a resumed or taken-back job
    keeps its old one, and one whose task is in a cluster's hands but not
    yet running (prefetched behind busy workers) is enqueued once more. The
    duplicate then waits in the queue, so the next call adds none.
    """
    if get_broker().queue_size():
        return []
    lost = list(
        Job.objects.filter(
            status=JobStatus.QUEUED, created_at__lt=stale_cutoff(stale_s)
        ).only("name")
    )
    for job in lost:
        logger.warning("job %s: queued with no task waiting; enqueued again", job.name)
        enqueue_job(job.pk)
    return [job.name for job in lost]


def enqueue_job(job_id: int) -> None:
    """Queue the job's task once the current transaction commits.

    A broker that cannot be reached (Redis down) is logged, not raised: the
    job row is committed as queued, and the recovery schedule enqueues it
    again once the queue is back and the job is older than the stale limit.
    """

    def send() -> None:
        try:
            async_task("studio.tasks.run_job_task", job_id)
        except Exception:  # noqa: BLE001 - any broker failure; recovery covers it
            logger.exception("job %s: could not reach the task queue", job_id)

    transaction.on_commit(send)


def job_status(job: Job) -> dict[str, Any]:
    """What a live view shows of a job: status, progress, ETA, the cause on failure."""
    return {
        "status": job.status,
        "terminal": job.is_terminal,
        "cancel_requested": job.cancel_requested,
        "percent": job.percent_done,
        "counts": {
            "mini_batches_total": job.mini_batches_total,
            "mini_batches_done": job.mini_batches_done,
            "mini_batches_succeeded": job.mini_batches_succeeded,
            "mini_batches_failed": job.mini_batches_failed,
            "items_succeeded": job.items_succeeded,
            "items_failed": job.items_failed,
        },
        "eta_seconds": _rounded(job.eta_seconds),
        "duration_seconds": _rounded(job.duration_seconds),
        "error": job.error,
        "error_log": job.error_log,
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def execute_job(job: Job) -> None:
    """Run a claimed job through the engine and record how it ended.

    A job folder with a checkpoint (a resumed or recovered job) resumes
    from it. A run that loses its claim to a recovery stops at its next
    progress report and writes nothing more to the row.
    """
    if job.deployment is None:
        job.finish(
            JobStatus.FAILED,
            f"deployment revision {job.deployment_label} was deleted before the"
            " job started",
        )
        return
    owned = True

    def on_progress(progress: Progress) -> None:
        nonlocal owned
        owned = owned and job.record_progress(
            progress.total,
            progress.succeeded,
            progress.failed,
            progress.items_succeeded,
            progress.items_failed,
            progress.running,
        )

    try:
        spec = _job_spec(job)
        # Fetching a URL input may take long, and the engine's first progress
        # report comes only once its scoring processes started.
        if not job.beat():
            logger.warning("job %s: taken over while its input was fetched", job.name)
            return
        spread = instances.shared_ledger(job, spec)
        result = run_job(
            spec,
            should_cancel=lambda: not owned or _cancel_requested(job.pk),
            on_progress=on_progress,
            resume=_has_checkpoint(job),
            ledger_factory=spread,
            processes=spec.settings.max_concurrency_per_instance if spread else None,
        )
        if spread:
            instances.end_run(job)
    except EngineError as exc:
        job.finish(JobStatus.FAILED, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the job's one failure boundary
        job.finish(JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    recorded = job.record_progress(
        result.mini_batches,
        result.mini_batches_succeeded,
        result.mini_batches_failed,
        result.items_succeeded,
        result.items_failed,
    )
    if not (recorded and job.finish(result.status, result.error, result.error_log)):
        logger.warning("job %s: another run took it over; this run stopped", job.name)


def _job_spec(job: Job) -> JobSpec:
    input_path = Path(job.input_path) if job.input_path else _fetch_url(job)
    return job_spec(job, this_node(), input_path)


def job_spec(job: Job, node: str, input_path: Path | None = None) -> JobSpec:
    """The engine's spec of `job` on `node`; a URL input is where it was fetched to."""
    if input_path is None:
        input_path = Path(job.input_path) if job.input_path else _url_input_folder(job)
    return JobSpec(
        name=job.name,
        deployment=apply_overrides(deployment_spec(job.deployment), job.overrides),
        input_path=input_path,
        job_dir=Path(job.job_dir),
        node=node,
        env_cache=Path(settings.STUDIO_ENV_CACHE),
    )


def _cancel_requested(job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, cancel_requested=True).exists()


def _fetch_url(job: Job) -> Path:
    """Download a URL input into the workspace's inputs folder."""
    url = job.input.get("url", "")
    target = _url_input_folder(job)
    target.mkdir(parents=True, exist_ok=True)
    file_name = Path(urlparse(url).path).name or "input"
    destination = target / file_name
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            with open(destination, "wb") as sink:
                shutil.copyfileobj(response, sink, 1 << 20)
    except OSError as exc:
        raise EngineError(f"cannot download input {url}: {exc}") from exc
    return target


def _url_input_folder(job: Job) -> Path:
    return storage.datastore(job.workspace.name, "inputs", job.name)
