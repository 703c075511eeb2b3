"""Jobs: one invocation of an endpoint, pinned to the deployment revision it ran."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings as django_settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from .endpoints import BatchDeployment, BatchEndpoint
from .workspace import Workspace


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


JobStatus.TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
)
JobStatus.RESUMABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


class JobQuerySet(models.QuerySet):
    def for_workspace(self, workspace: Workspace) -> JobQuerySet:
        return self.filter(workspace=workspace)

    def stale(self, cutoff: datetime) -> JobQuerySet:
        """Running jobs whose worker has not written a heartbeat since `cutoff`."""
        # Rows claimed before heartbeats existed fall back to their start time.
        return self.filter(status=JobStatus.RUNNING).filter(
            Q(heartbeat_at__lt=cutoff)
            | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        )


class Job(models.Model):
    """A batch scoring job; its job folder holds outputs and logs."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="jobs"
    )
    name = models.CharField(max_length=64, unique=True)
    endpoint = models.ForeignKey(
        BatchEndpoint, on_delete=models.SET_NULL, null=True, related_name="jobs"
    )
    endpoint_name = models.CharField(max_length=32)
    deployment = models.ForeignKey(
        BatchDeployment, on_delete=models.SET_NULL, null=True, related_name="jobs"
    )
    deployment_label = models.CharField(max_length=64)
    input = models.JSONField(default=dict)
    input_path = models.CharField(max_length=2048)
    input_type = models.CharField(max_length=16, default="uri_folder")
    job_dir = models.CharField(max_length=2048)
    overrides = models.JSONField(default=dict, blank=True)
    settings = models.JSONField(default=dict)
    tags = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED
    )
    cancel_requested = models.BooleanField(default=False)
    mini_batches_total = models.PositiveIntegerField(default=0)
    mini_batches_succeeded = models.PositiveIntegerField(default=0)
    mini_batches_failed = models.PositiveIntegerField(default=0)
    # In progress at the last report, on every node (the Compute page).
    mini_batches_running = models.PositiveIntegerField(default=0)
    items_succeeded = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    error_log = models.CharField(max_length=512, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by the running worker about once a second; a running job whose
    # heartbeat stopped lost its worker and is taken back (services.jobs).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # How often a worker claimed the job: more than 1 after a resume or a
    # recovery. A worker writes the row only while its claim is the latest.
    runs = models.PositiveIntegerField(default=0)
    # The node (STUDIO_NODE_NAME) whose worker claimed the job last.
    node = models.CharField(max_length=255, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-created_at", "-id"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("studio:job-detail", args=[self.workspace.name, self.name])

    @property
    def is_terminal(self) -> bool:
        return self.status in JobStatus.TERMINAL

    @property
    def mini_batches_done(self) -> int:
        return self.mini_batches_succeeded + self.mini_batches_failed

    @property
    def percent_done(self) -> int:
        if self.status == JobStatus.COMPLETED:
            return 100
        if not self.mini_batches_total:
            return 0
        return int(100 * self.mini_batches_done / self.mini_batches_total)

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the pace so far; None before the first mini-batch ends."""
        done = self.mini_batches_done
        if self.is_terminal or not done or not self.started_at:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return elapsed / done * (self.mini_batches_total - done)

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    def claim(self, node: str = "") -> bool:
        """Move queued -> running on `node`; False when another delivery was first."""
        now = timezone.now()
        claimed = Job.objects.filter(pk=self.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            runs=F("runs") + 1,
            node=node,
        )
        if claimed:
            self.refresh_from_db(
                fields=["status", "started_at", "heartbeat_at", "runs", "node"]
            )
        return bool(claimed)

    def _this_run(self) -> JobQuerySet:
        """The row while this instance's claim is the latest and it still runs."""
        return Job.objects.filter(pk=self.pk, status=JobStatus.RUNNING, runs=self.runs)

    def beat(self) -> bool:
        """Write the heartbeat alone; False when the job was taken from this run."""
        self.heartbeat_at = timezone.now()
        return bool(self._this_run().update(heartbeat_at=self.heartbeat_at))

    def record_progress(self, total: int, succeeded: int, failed: int,
                        items_succeeded: int, items_failed: int,
                        running: int = 0) -> bool:  # fmt: skip
        """Store the counts and the heartbeat in one UPDATE.

        False when the job was taken from this run (its heartbeat was stale):
        the run must stop, another one owns the job now.
        """
        self.mini_batches_total = total
        self.mini_batches_succeeded = succeeded
        self.mini_batches_failed = failed
        self.items_succeeded = items_succeeded
        self.items_failed = items_failed
        self.mini_batches_running = running
        self.heartbeat_at = timezone.now()
        return bool(
            self._this_run().update(
                mini_batches_running=running,
                mini_batches_total=total,
                mini_batches_succeeded=succeeded,
                mini_batches_failed=failed,
                items_succeeded=items_succeeded,
                items_failed=items_failed,
                heartbeat_at=self.heartbeat_at,
            )
        )

    def finish(self, status: str, error: str = "", error_log: str = "") -> bool:
        """End this run; False (nothing written) when the job was taken from it."""
        self.status = status
        self.error = error
        self.error_log = error_log
        self.finished_at = timezone.now()
        return bool(
            self._this_run().update(
                status=status,
                error=error,
                error_log=error_log,
                finished_at=self.finished_at,
            )
        )
