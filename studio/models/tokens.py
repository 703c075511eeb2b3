"""API tokens: stored as a SHA-256 digest and a short visible prefix, never secret."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# Marks a secret as ours, so a leaked one is recognisable (as in "ghp_").
SECRET_MARK = "bst_"
PREFIX_LENGTH = len(SECRET_MARK) + 8
# last_used_at is written at most this often per token: one UPDATE per
# request would serialise every API call on SQLite's single writer.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def digest(secret: str) -> str:
    """The stored form of a secret; 32 random bytes need no salt or slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def issue(self, user: settings.AUTH_USER_MODEL, name: str) -> tuple[ApiToken, str]:
        """A new token for `user` and its secret; the secret is not kept anywhere."""
        secret = SECRET_MARK + secrets.token_urlsafe(32)
        token = self.create(
            user=user, name=name, prefix=secret[:PREFIX_LENGTH], digest=digest(secret)
        )
        return token, secret

    def for_secret(self, secret: str) -> ApiToken | None:
        """The live token holding `secret` (with its user), or None."""
        return (
            self.select_related("user").filter(digest=digest(secret)).first()
            if secret.startswith(SECRET_MARK)
            else None
        )


class ApiToken(models.Model):
    """A user's credential for the REST API; deleting it revokes it at once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=PREFIX_LENGTH)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def touch(self) -> None:
        """Record a use; skipped when the last one is recorded recently enough."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < LAST_USED_RESOLUTION:
            return
        self.last_used_at = now
        ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
