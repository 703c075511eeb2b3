"""django-q task functions: take ids, claim the row, call a service."""

from __future__ import annotations

from .models import Job
from .services.endpoints import finish_endpoint_deletion
from .services.jobs import execute_job


def run_job_task(job_id: int) -> None:
    """Run one queued job; a redelivered task finds it claimed and returns.

    django-q delivers at least once, so the same task may arrive twice, even
    at the same moment on two workers: the conditional claim lets one win.
    """
    job = (
        Job.objects.select_related(
            "workspace", "deployment__model", "deployment__environment"
        )
        .filter(pk=job_id)
        .first()
    )
    if job is None or not job.claim():
        return
    execute_job(job)


def delete_endpoint_task(endpoint_id: int) -> None:
    finish_endpoint_deletion(endpoint_id)
