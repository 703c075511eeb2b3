"""Node heartbeats: each qcluster worker process keeps its node's row fresh."""

from __future__ import annotations

import logging
import os
import platform
import threading

import psutil
from django.conf import settings
from django.db import connection
from django.utils import timezone

from scoring_engine.node import node_name

from .models import Job, JobStatus, Node, RunBatch, RunInstance, Workspace
from .models.compute import heartbeat_interval

logger = logging.getLogger(__name__)

MB = 1024 * 1024
_VALUES = (
    "cluster",
    "last_seen",
    "pid",
    "workers",
    "cpu_pct",
    "memory_pct",
    "memory_used_mb",
    "memory_total_mb",
    "version",
)
_lock = threading.Lock()
_started_in: int | None = None  # the process id that runs this module's thread


def this_node() -> str:
    """This machine's node name: STUDIO_NODE_NAME, else its IP address."""
    return settings.STUDIO_NODE_NAME or node_name()


def beat(name: str) -> None:
    """Upsert the node's row with the time and this machine's CPU and memory.

    One INSERT ... ON CONFLICT DO UPDATE statement, so concurrent workers of
    the same node never race on creating the row.
    """
    memory = psutil.virtual_memory()
    node = Node(
        name=name,
        cluster=settings.Q_CLUSTER.get("name", ""),
        last_seen=timezone.now(),
        pid=os.getpid(),
        workers=settings.Q_CLUSTER.get("workers") or psutil.cpu_count() or 1,
        # Since the previous call in this process; 0.0 on the first.
        cpu_pct=psutil.cpu_percent(interval=None),
        memory_pct=memory.percent,
        memory_used_mb=(memory.total - memory.available) // MB,
        memory_total_mb=memory.total // MB,
        version=f"Python {platform.python_version()}",
    )
    Node.objects.bulk_create(
        [node], update_conflicts=True, unique_fields=["name"], update_fields=_VALUES
    )


def run_heartbeat(name: str, interval: float, stop: threading.Event) -> None:
    """Beat every `interval` seconds until `stop` is set; survive database errors."""
    psutil.cpu_percent(interval=None)  # starts the CPU measurement window
    while True:
        try:
            beat(name)
        except Exception:
            # A database restart or a locked SQLite file must not end the
            # heartbeat: the next beat tries again.
            logger.exception("node %s: heartbeat failed", name)
        finally:
            # Between beats the thread holds no connection (nor a broken one).
            connection.close()
        if stop.wait(interval):
            return


def start_heartbeat() -> bool:
    """Start this process's heartbeat thread once; False if it already runs.

    Keyed by process id: a worker forked from a process that had started one
    inherits the flag but not the thread, and starts its own.
    """
    global _started_in
    with _lock:
        if _started_in == os.getpid():
            return False
        _started_in = os.getpid()
    threading.Thread(
        target=run_heartbeat,
        args=(this_node(), heartbeat_interval(), threading.Event()),
        name="studio-node-heartbeat",
        daemon=True,
    ).start()
    return True


def nodes_with_running_jobs(workspace: Workspace) -> list[Node]:
    """Every node, with what runs on it now.

    Each node gets `.running_jobs` (the workspace's jobs it orchestrates or
    helps with), `.scoring_processes` and `.mini_batches_running` (over all
    workspaces: the machine is shared). Four queries whatever the number of
    nodes and jobs.
    """
    nodes = list(Node.objects.all())
    by_name = {node.name: node for node in nodes}
    for node in nodes:
        node.running_jobs, node.scoring_processes, node.mini_batches_running = [], 0, 0
    jobs = {
        job.pk: job
        for job in Job.objects.filter(status=JobStatus.RUNNING)
        .only(
            "name",
            "node",
            "started_at",
            "workspace_id",
            "settings",
            "runs",
            "mini_batches_running",
        )  # fmt: skip
        .order_by("started_at", "id")
    }
    # Nodes taking part in the current run of a job spread over several.
    helpers: dict[int, list[str]] = {}
    for job_id, taking_part, run in RunInstance.objects.filter(
        job_run__job_id__in=jobs, job_run__stopped=False, lost=False, left_at=None
    ).values_list("job_run__job_id", "node", "job_run__run"):
        if jobs[job_id].runs == run:
            helpers.setdefault(job_id, []).append(taking_part)
    running = RunBatch.objects.filter(
        job_run__job_id__in=helpers, job_run__stopped=False, state="running"
    ).values_list("node", flat=True)
    for scoring_node in running:
        if scoring_node in by_name:
            by_name[scoring_node].mini_batches_running += 1
    for job in jobs.values():
        spread = helpers.get(job.pk)
        settings_ = job.settings or {}
        per_node = int(settings_.get("max_concurrency_per_instance", 1))
        for name in spread or [job.node]:
            node = by_name.get(name)
            if node is None:
                continue
            if spread:
                node.scoring_processes += per_node
            else:
                node.scoring_processes += per_node * int(
                    settings_.get("instance_count", 1)
                )
                node.mini_batches_running += job.mini_batches_running
            if job.workspace_id == workspace.pk:
                node.running_jobs.append(job)
    return nodes


def job_nodes(job: Job) -> list[str]:
    """The nodes a job's latest run scores on, each with its part, for its page."""
    instances = RunInstance.objects.filter(
        job_run__job=job, job_run__run=job.runs
    ).order_by("number")
    parts = []
    for instance in instances:
        part = "orchestrator" if instance.number == 0 else "helper"
        if instance.lost:
            part += ", lost: its mini-batches ran again elsewhere"
        parts.append(f"{instance.node} ({part})")
    return parts or ([job.node] if job.node else [])
