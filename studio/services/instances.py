"""Spreading one job over nodes: how many help, asking them, and a helper's part."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django_q.tasks import async_task

from scoring_engine import (
    EngineError,
    JobSpec,
    LedgerFactory,
    MiniBatchLedger,
    run_instance,
)
from scoring_engine.jobfolder import JobFolder, LogFile

from ..ledger import DatabaseLedger
from ..models import Job, JobRun, JobStatus, Node, RunBatch, RunInstance

logger = logging.getLogger(__name__)

# A helper task delivered to a node that already takes part in the run goes
# back on the queue for another node, at most this many times.
MAX_REDELIVERIES = 20
HELPER_TASK = "studio.tasks.run_instance_task"


def shared_ledger(job: Job, spec: JobSpec) -> LedgerFactory | None:
    """The ledger factory that spreads `job` over other live nodes, or None.

    None when instance_count is 1 or no other node is alive: then this node
    runs every scoring process itself, from the engine's in-memory ledger.
    """
    helpers = min(
        spec.settings.instance_count - 1,
        _live_nodes().exclude(name=spec.node).count(),
    )
    if helpers <= 0:
        return None

    def open_ledger(item_counts: Sequence[int], tries: int) -> MiniBatchLedger:
        return DatabaseLedger.open(
            job,
            spec.node,
            item_counts,
            tries,
            on_open=lambda: ask_helpers(job, helpers),
        )

    return open_ledger


def ask_helpers(job: Job, count: int) -> None:
    """Queue one helper task per wanted node; numbers 1..count."""
    for number in range(1, count + 1):
        async_task(HELPER_TASK, job.pk, job.runs, number)


def end_run(job: Job) -> None:
    """The orchestrator ended: drop the run's mini-batch rows, keep who took part."""
    RunBatch.objects.filter(job_run__job=job, job_run__run=job.runs).delete()


def help_with_job(
    job_id: int,
    run: int,
    number: int,
    node: str,
    spec_of: Callable[[Job, str], JobSpec],
    redeliveries: int = 0,
) -> None:
    """Be helper `number` of a job's run `run` on `node`, if it still wants one.

    A node already taking part hands the task back to the queue, for a node
    that does not; a delivery that finds the run over or the place taken
    (django-q delivers at least once) does nothing.
    """
    job_run = (
        JobRun.objects.select_related(
            "job__workspace", "job__deployment__model", "job__deployment__environment"
        )
        .filter(
            job_id=job_id,
            run=run,
            stopped=False,
            job__status=JobStatus.RUNNING,
            job__runs=run,
        )
        .first()
    )
    if job_run is None:
        return
    # The join decides, not a look at the instances first: another helper
    # may join on this node in between, and this one would be dropped.
    ledger = DatabaseLedger.join(job_run, node, number)
    if ledger is None:
        if not job_run.instances.filter(number=number).exists():
            _hand_back(job_run, number, redeliveries)
        return
    job = job_run.job
    try:
        spec = spec_of(job, node)
        run_instance(
            spec,
            ledger,
            should_stop=lambda: ledger.lost,
            on_beat=ledger.beat,
        )
    except EngineError as exc:
        # The job goes on without this node; its driver log says why.
        logger.warning("job %s: node %s cannot help: %s", job.name, node, exc)
        _note_in_driver_log(job, f"Node {node} cannot help with this job: {exc}")
    finally:
        ledger.leave()
        connection.close()


def _hand_back(job_run: JobRun, number: int, redeliveries: int) -> None:
    """Queue helper `number` again for a node not taking part, while one may be."""
    if redeliveries < MAX_REDELIVERIES and _nodes_not_in(job_run):
        async_task(HELPER_TASK, job_run.job_id, job_run.run, number, redeliveries + 1)
        return
    _note_in_driver_log(
        job_run.job,
        f"Helper {number} found no node free to take part; the job goes on"
        " with fewer nodes",
    )


def _nodes_not_in(job_run: JobRun) -> bool:
    """Whether a live node exists that does not take part in the run yet."""
    taking_part = RunInstance.objects.filter(job_run=job_run).values("node")
    return _live_nodes().exclude(name__in=taking_part).exists()


def _live_nodes() -> QuerySet[Node]:
    """Live nodes of this cluster: only they take tasks from its queue."""
    return Node.objects.alive().filter(cluster=settings.Q_CLUSTER.get("name", ""))


def _note_in_driver_log(job: Job, message: str) -> None:
    if not job.job_dir:
        return
    try:
        log = LogFile(JobFolder(job.job_dir).driver_log)
    except OSError:
        return
    log.write(message)
    log.close()
