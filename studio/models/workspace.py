"""Workspaces and their members' roles."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Role(models.TextChoices):
    READER = "reader", "Reader"
    CONTRIBUTOR = "contributor", "Contributor"
    OWNER = "owner", "Owner"

    @classmethod
    def rank(cls, role: str) -> int:
        return [cls.READER, cls.CONTRIBUTOR, cls.OWNER].index(role)


class WorkspaceQuerySet(models.QuerySet):
    def for_user(self, user: settings.AUTH_USER_MODEL) -> WorkspaceQuerySet:
        return self.filter(memberships__user=user)


class Workspace(models.Model):
    """A team's space: every model, data asset, endpoint and job belongs to one."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("studio:workspace", args=[self.name])


class Membership(models.Model):
    """A user's role in one workspace."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READER)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "user"], name="one_membership_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.workspace}"
