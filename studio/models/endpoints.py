"""Batch endpoints and their deployments (immutable revisions)."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.urls import reverse

from .assets import Environment, ModelAsset
from .workspace import Workspace


class EndpointState(models.TextChoices):
    CREATING = "creating", "Creating"
    READY = "ready", "Ready"
    DELETING = "deleting", "Deleting"


class BatchEndpoint(models.Model):
    """The stable name users invoke; its default deployment does the scoring."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="endpoints"
    )
    name = models.CharField(max_length=32)
    description = models.TextField(blank=True)
    state = models.CharField(
        max_length=16, choices=EndpointState.choices, default=EndpointState.READY
    )
    default_deployment = models.CharField(max_length=32, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name"], name="endpoint_name_unique"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("studio:endpoint-detail", args=[self.workspace.name, self.name])

    def current_deployment(self, name: str = "") -> BatchDeployment | None:
        """The newest revision of `name` (default: the default deployment)."""
        return (
            self.deployments.filter(name=name or self.default_deployment)
            .order_by("-revision")
            .first()
        )


class BatchDeployment(models.Model):
    """One revision of a named deployment; never changed once saved."""

    endpoint = models.ForeignKey(
        BatchEndpoint, on_delete=models.CASCADE, related_name="deployments"
    )
    name = models.CharField(max_length=32)
    revision = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    model = models.ForeignKey(ModelAsset, on_delete=models.PROTECT, related_name="+")
    code_path = models.CharField(max_length=1024, blank=True)
    scoring_script = models.CharField(max_length=255, blank=True)
    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    compute = models.CharField(max_length=64, default="default")
    settings = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-revision"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "name", "revision"],
                name="deployment_revision_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint.name}/{self.name} r{self.revision}"
