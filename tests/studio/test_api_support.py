"""Clients and URLs the REST API tests share (no tests of its own)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework.test import APIClient

from studio.models import ApiToken

ROLES = ("owner", "contributor", "reader")
# Who may write (contributor and up) and what everyone else gets.
WRITE_STATUS = {"owner": None, "contributor": None, "reader": 403, "outsider": 404}


def api_url(name: str, *args: Any) -> str:
    return reverse(f"api:{name}", args=args)


def token_client(user: Any) -> APIClient:
    """A client sending `Authorization: Bearer <a fresh token of user>`."""
    _, secret = ApiToken.objects.issue(user, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def api(cast: Any, who: str) -> APIClient:
    """A token client of one of the cast; "anonymous" sends no credentials."""
    return APIClient() if who == "anonymous" else token_client(getattr(cast, who))
