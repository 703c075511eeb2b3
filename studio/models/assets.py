"""Versioned assets of a workspace: models, data assets, environments."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from .workspace import Workspace


class VersionedQuerySet(models.QuerySet):
    def latest_versions(self) -> VersionedQuerySet:
        """One row per name: its highest version."""
        newest = self.filter(
            workspace=models.OuterRef("workspace"), name=models.OuterRef("name")
        ).order_by("-version")
        return self.filter(pk=models.Subquery(newest.values("pk")[:1]))

    def next_version(self, workspace: Workspace, name: str) -> int:
        top = self.filter(workspace=workspace, name=name).aggregate(
            top=models.Max("version")
        )["top"]
        return (top or 0) + 1


class VersionedAsset(models.Model):
    """Fields every versioned asset has; `name:version` is unique per workspace."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    name = models.CharField(max_length=128)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VersionedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["name", "-version"]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


class ModelAsset(VersionedAsset):
    """A registered model version: its files in the datastore, MLflow facts if any."""

    class Type(models.TextChoices):
        MLFLOW = "mlflow_model", "MLflow model"
        CUSTOM = "custom_model", "Custom model"

    type = models.CharField(max_length=16, choices=Type.choices)
    path = models.CharField(max_length=1024)
    source = models.CharField(max_length=1024, blank=True)
    mlflow = models.JSONField(default=dict, blank=True)

    class Meta(VersionedAsset.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name", "version"], name="model_version_unique"
            )
        ]

    def get_absolute_url(self) -> str:
        return reverse(
            "studio:model-detail", args=[self.workspace.name, self.name, self.version]
        )


class DataAsset(VersionedAsset):
    """A registered input: a file or folder (datastore or server path) or a URL."""

    class Type(models.TextChoices):
        FILE = "uri_file", "File (uri_file)"
        FOLDER = "uri_folder", "Folder (uri_folder)"

    type = models.CharField(max_length=16, choices=Type.choices)
    path = models.CharField(max_length=2048)

    class Meta(VersionedAsset.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name", "version"], name="data_version_unique"
            )
        ]

    def get_absolute_url(self) -> str:
        return reverse(
            "studio:data-detail", args=[self.workspace.name, self.name, self.version]
        )

    @property
    def is_url(self) -> bool:
        return self.path.startswith(("http://", "https://"))


class Environment(VersionedAsset):
    """Pip requirement lines scoring runs with; none = the worker's own Python."""

    python_requirements = models.JSONField(default=list, blank=True)

    class Meta(VersionedAsset.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name", "version"], name="environment_unique"
            )
        ]

    def get_absolute_url(self) -> str:
        return reverse(
            "studio:environment-detail",
            args=[self.workspace.name, self.name, self.version],
        )
