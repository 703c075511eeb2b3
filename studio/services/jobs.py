"""Running queued jobs through the engine, recording progress, canceling them."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from scoring_engine import (
    EngineError,
    JobSpec,
    Progress,
    apply_overrides,
    run_job,
)
from scoring_engine.node import node_name

from .. import storage
from ..models import Job, JobStatus
from .endpoints import deployment_spec


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
    """Run a claimed job through the engine and record how it ended."""
    if job.deployment is None:
        job.finish(
            JobStatus.FAILED,
            f"deployment revision {job.deployment_label} was deleted before the"
            " job started",
        )
        return
    try:
        input_path = Path(job.input_path) if job.input_path else _fetch_url(job)
        spec = JobSpec(
            name=job.name,
            deployment=apply_overrides(deployment_spec(job.deployment), job.overrides),
            input_path=input_path,
            job_dir=Path(job.job_dir),
            node=settings.STUDIO_NODE_NAME or node_name(),
            env_cache=Path(settings.STUDIO_ENV_CACHE),
        )
        result = run_job(
            spec,
            should_cancel=lambda: _cancel_requested(job.pk),
            on_progress=lambda progress: _record(job, progress),
        )
    except EngineError as exc:
        job.finish(JobStatus.FAILED, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the job's one failure boundary
        job.finish(JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    job.record_progress(
        result.mini_batches,
        result.mini_batches_succeeded,
        result.mini_batches_failed,
        result.items_succeeded,
        result.items_failed,
    )
    job.finish(result.status, result.error, result.error_log)


def _cancel_requested(job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, cancel_requested=True).exists()


def _record(job: Job, progress: Progress) -> None:
    job.record_progress(
        progress.total,
        progress.succeeded,
        progress.failed,
        progress.items_succeeded,
        progress.items_failed,
    )


def _fetch_url(job: Job) -> Path:
    """Download a URL input into the workspace's inputs folder."""
    url = job.input.get("url", "")
    target = storage.datastore(job.workspace.name, "inputs", job.name)
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
