"""Jobs: one invocation of an endpoint, pinned to the deployment revision it ran."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
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


class JobQuerySet(models.QuerySet):
    def for_workspace(self, workspace: Workspace) -> JobQuerySet:
        return self.filter(workspace=workspace)


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

    def claim(self) -> bool:
        """Move queued -> running; False when another delivery got there first."""
        now = timezone.now()
        claimed = Job.objects.filter(pk=self.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=now
        )
        if claimed:
            self.status, self.started_at = JobStatus.RUNNING, now
        return bool(claimed)

    def record_progress(self, total: int, succeeded: int, failed: int,
                        items_succeeded: int, items_failed: int) -> None:  # fmt: skip
        self.mini_batches_total = total
        self.mini_batches_succeeded = succeeded
        self.mini_batches_failed = failed
        self.items_succeeded = items_succeeded
        self.items_failed = items_failed
        self.save(
            update_fields=[
                "mini_batches_total",
                "mini_batches_succeeded",
                "mini_batches_failed",
                "items_succeeded",
                "items_failed",
            ]
        )

    def finish(self, status: str, error: str = "", error_log: str = "") -> None:
        self.status = status
        self.error = error
        self.error_log = error_log
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "error", "error_log", "finished_at"])
