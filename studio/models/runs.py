"""A job run spread over nodes: its shared mini-batch ledger, the nodes taking part."""

from __future__ import annotations

from django.db import models

from .jobs import Job


class BatchState(models.TextChoices):
    # The engine's scoring_engine.BatchState values, stored.
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class JobRun(models.Model):
    """One claim of a job whose instance_count spreads it over several nodes.

    Its mini-batches are claimed from RunBatch rows by every node taking
    part; a later run of the same job (resume, recovery) stops this one.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="job_runs")
    # Job.runs when this run claimed the job.
    run = models.PositiveIntegerField()
    total = models.PositiveIntegerField()
    tries = models.PositiveIntegerField()
    stopped = models.BooleanField(default=False)
    # Why a node stopped the job (init() failed...), and the log to open.
    stop_cause = models.TextField(blank=True)
    stop_log = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "run"], name="one_ledger_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} run {self.run}"


class RunBatch(models.Model):
    """One mini-batch of a JobRun: who runs it, which attempt, how it ended."""

    job_run = models.ForeignKey(
        JobRun, on_delete=models.CASCADE, related_name="batches"
    )
    index = models.PositiveIntegerField()
    item_count = models.PositiveIntegerField()
    state = models.CharField(
        max_length=16, choices=BatchState.choices, default=BatchState.PENDING
    )
    attempt = models.PositiveIntegerField(default=0)
    node = models.CharField(max_length=255, blank=True)
    process = models.CharField(max_length=64, blank=True)
    items_succeeded = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job_run", "index"], name="one_row_per_mini_batch"
            )
        ]
        indexes = [models.Index(fields=["job_run", "state", "index"])]

    def __str__(self) -> str:
        return f"mini-batch {self.index} ({self.state})"


class RunInstance(models.Model):
    """A node taking part in a JobRun; its heartbeat is its lease on its claims."""

    job_run = models.ForeignKey(
        JobRun, on_delete=models.CASCADE, related_name="instances"
    )
    node = models.CharField(max_length=255)
    # 0 is the orchestrating node; helpers are 1..instance_count-1.
    number = models.PositiveIntegerField()
    heartbeat_at = models.DateTimeField()
    # Set by the orchestrator when the heartbeat went stale: its claims were
    # taken back and the node must stop scoring for this run.
    lost = models.BooleanField(default=False)
    joined_at = models.DateTimeField(auto_now_add=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(
                fields=["job_run", "node"], name="one_instance_per_node"
            ),
            models.UniqueConstraint(
                fields=["job_run", "number"], name="one_node_per_instance"
            ),
        ]

    def __str__(self) -> str:
        return f"instance {self.number} on {self.node}"
