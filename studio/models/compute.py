"""Worker nodes: one row per node, kept fresh by its workers' heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# A node is alive while it beat within this many heartbeat intervals.
ALIVE_INTERVALS = 3


def heartbeat_interval() -> float:
    """Seconds between a worker's heartbeats: STUDIO_NODE_HEARTBEAT_S, 10 by default."""
    return float(settings.STUDIO_NODE_HEARTBEAT_S)


class NodeQuerySet(models.QuerySet):
    def alive(self, now: datetime | None = None) -> NodeQuerySet:
        return self.filter(last_seen__gte=Node.alive_cutoff(now))


class Node(models.Model):
    """A machine running a django-q cluster, as its last heartbeat saw it."""

    name = models.CharField(max_length=255, unique=True)
    # The django-q cluster (and so queue) the node's workers take tasks from.
    cluster = models.CharField(max_length=100, blank=True)
    last_seen = models.DateTimeField()
    pid = models.PositiveIntegerField(null=True, blank=True)
    workers = models.PositiveIntegerField(default=0)
    cpu_pct = models.FloatField(default=0)
    memory_pct = models.FloatField(default=0)
    memory_used_mb = models.PositiveIntegerField(default=0)
    memory_total_mb = models.PositiveIntegerField(default=0)
    version = models.CharField(max_length=100, blank=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def alive_cutoff(now: datetime | None = None) -> datetime:
        interval = ALIVE_INTERVALS * heartbeat_interval()
        return (now or timezone.now()) - timedelta(seconds=interval)

    @property
    def is_alive(self) -> bool:
        return self.last_seen >= self.alive_cutoff()

    @property
    def seen_ago_seconds(self) -> float:
        return max(0.0, (timezone.now() - self.last_seen).total_seconds())
