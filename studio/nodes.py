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

from .models import Job, JobStatus, Node, Workspace
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
    """Every node, each with `.running_jobs`: the workspace's jobs running on it.

    Two queries whatever the number of nodes and jobs.
    """
    nodes = list(Node.objects.all())
    running: dict[str, list[Job]] = {node.name: [] for node in nodes}
    jobs = (
        Job.objects.for_workspace(workspace)
        .filter(status=JobStatus.RUNNING, node__in=running)
        .only("name", "node", "started_at")
        .order_by("started_at", "id")
    )
    for job in jobs:
        running[job.node].append(job)
    for node in nodes:
        node.running_jobs = running[node.name]
    return nodes
