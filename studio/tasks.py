"""django-q task functions: take ids, claim the row, call a service."""

from __future__ import annotations

from .models import Job, JobStatus
from .nodes import this_node
from .services import instances, jobs
from .services.endpoints import finish_endpoint_deletion


def run_job_task(job_id: int) -> None:
    """Run one queued job; a redelivered task finds it claimed and returns.

    django-q delivers at least once, so the same task may arrive twice, even
    at the same moment on two workers: the conditional claim lets one win.
    A task delivered again because its worker died finds the job running
    with a stale heartbeat: it takes the job back and resumes it.
    """
    job = (
        Job.objects.select_related(
            "workspace", "deployment__model", "deployment__environment"
        )
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        return
    if job.status == JobStatus.RUNNING:
        jobs.requeue_stale_job(job)
    if job.claim(node=this_node()):
        jobs.execute_job(job)


def run_instance_task(
    job_id: int, run: int, number: int, redeliveries: int = 0
) -> None:
    """Help score run `run` of a job spread over nodes, as its instance `number`."""
    instances.help_with_job(
        job_id, run, number, this_node(), jobs.job_spec, redeliveries
    )


def recover_stale_jobs(stale_s: float | None = None) -> list[str]:
    """Scheduled every minute: resume the running jobs whose worker died, and
    enqueue again the queued jobs whose task was lost; the jobs' names."""
    # Lost tasks first: a job this call takes back from a dead worker is
    # enqueued by it, and needs no second task.
    lost = jobs.requeue_lost_queued_jobs(stale_s)
    return lost + jobs.recover_stale_jobs(stale_s)


def delete_endpoint_task(endpoint_id: int) -> None:
    finish_endpoint_deletion(endpoint_id)
