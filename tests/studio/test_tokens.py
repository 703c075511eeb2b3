"""API tokens: the settings page, hashed storage, revocation, last use."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from studio.models import ApiToken

from .test_api_support import api_url

PAGE = reverse("studio:token-list")
WORKSPACES = api_url("workspace-list")


def create_token(client, name: str = "nightly") -> str:
    """Create a token on the page; the secret it shows once."""
    response = client.post(PAGE, {"name": name})
    assert response.status_code == 200
    found = re.search(r'<code id="new-token">([^<]+)</code>', response.text)
    assert found, response.text
    return found.group(1)


def bearer(secret: str, keyword: str = "Bearer") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {secret}")
    return client


def test_the_page_needs_a_login(db, client):
    response = client.get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_shows_a_new_token_once_and_then_only_its_prefix(cast):
    client = cast.client("reader")

    secret = create_token(client)

    token = ApiToken.objects.get(user=cast.reader)
    assert secret.startswith("bst_") and len(secret) > 40
    assert token.name == "nightly" and secret.startswith(token.prefix)
    page = client.get(PAGE).text
    assert secret not in page
    assert token.prefix in page
    assert bearer(secret).get(WORKSPACES).status_code == 200


def test_the_database_holds_no_secret(cast):
    secret = create_token(cast.client("owner"))

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM studio_apitoken")
        rows = cursor.fetchall()
    stored = " ".join(str(value) for row in rows for value in row)
    assert secret not in stored
    assert secret[len("bst_") :] not in stored
    assert ApiToken.objects.get().digest == hashlib.sha256(secret.encode()).hexdigest()


def test_it_accepts_the_drf_token_keyword(cast):
    secret = create_token(cast.client("reader"))

    assert bearer(secret, "Token").get(WORKSPACES).status_code == 200


def test_a_revoked_token_is_refused_at_once(cast):
    client = cast.client("reader")
    secret = create_token(client)
    token = ApiToken.objects.get()

    response = client.post(reverse("studio:token-revoke", args=[token.pk]))

    assert response.status_code == 302 and response["Location"] == PAGE
    assert not ApiToken.objects.exists()
    refused = bearer(secret).get(WORKSPACES)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]


def test_nobody_revokes_another_users_token(cast):
    create_token(cast.client("reader"))
    token = ApiToken.objects.get()

    response = cast.client("owner").post(
        reverse("studio:token-revoke", args=[token.pk])
    )

    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_revoking_needs_a_post(cast):
    create_token(cast.client("reader"))
    token = ApiToken.objects.get()

    response = cast.client("reader").get(
        reverse("studio:token-revoke", args=[token.pk])
    )

    assert response.status_code == 405


def test_it_lists_only_the_users_own_tokens(cast):
    ApiToken.objects.issue(cast.owner, "owner-script")
    create_token(cast.client("reader"), "reader-script")

    page = cast.client("reader").get(PAGE).text

    assert "reader-script" in page and "owner-script" not in page


def test_it_requires_a_name(cast):
    response = cast.client("reader").post(PAGE, {"name": ""})

    assert response.status_code == 200
    assert "This field is required" in response.text
    assert not ApiToken.objects.exists()


def test_it_limits_how_many_tokens_a_user_has(cast, monkeypatch):
    monkeypatch.setattr("studio.views.tokens.TOKEN_LIMIT", 2)
    client = cast.client("reader")
    create_token(client, "one")
    create_token(client, "two")

    response = client.post(PAGE, {"name": "three"})

    assert "revoke one first" in response.text
    assert ApiToken.objects.count() == 2


def test_it_records_when_a_token_was_last_used_about_once_a_minute(cast):
    token, secret = ApiToken.objects.issue(cast.reader, "script")
    client = bearer(secret)

    client.get(WORKSPACES)
    first = ApiToken.objects.get().last_used_at
    client.get(WORKSPACES)

    assert first is not None and ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    client.get(WORKSPACES)
    assert ApiToken.objects.get().last_used_at > first - timedelta(seconds=1)
    assert ApiToken.objects.get().last_used_at <= timezone.now()


def test_it_writes_nothing_on_a_recent_token(cast, django_assert_num_queries):
    _, secret = ApiToken.objects.issue(cast.reader, "script")
    ApiToken.objects.update(last_used_at=timezone.now())
    client = bearer(secret)

    # token lookup (with its user), the workspace list, the page count
    with django_assert_num_queries(3):
        assert client.get(WORKSPACES).status_code == 200


def test_an_inactive_users_token_is_refused(cast):
    _, secret = ApiToken.objects.issue(cast.reader, "script")
    cast.reader.is_active = False
    cast.reader.save(update_fields=["is_active"])

    assert bearer(secret).get(WORKSPACES).status_code == 401


@pytest.mark.parametrize("secret", ["", "bst_", "not-ours", "bst_" + "x" * 43])
def test_made_up_secrets_are_refused(cast, secret):
    ApiToken.objects.issue(cast.reader, "script")

    assert bearer(secret).get(WORKSPACES).status_code == 401
