"""django-q signal receivers: each cluster worker process starts a node heartbeat."""

from __future__ import annotations

from typing import Any

from django_q.conf import Conf
from django_q.signals import post_spawn

from . import nodes


def start_node_heartbeat(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
    """Sent in each worker process as it starts (django_q.worker.worker)."""
    # With sync tasks the "worker" runs inside the web or test process,
    # which is not a worker node.
    if not Conf.SYNC:
        nodes.start_heartbeat()


def connect() -> None:
    """Called from StudioConfig.ready(); nothing starts before a worker spawns."""
    post_spawn.connect(start_node_heartbeat, dispatch_uid="studio-node-heartbeat")
