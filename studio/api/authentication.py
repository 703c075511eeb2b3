"""Bearer-token authentication for the REST API (hashed tokens, see models/tokens)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.request import Request

from ..models import ApiToken

# `Token` is DRF's own keyword; scripts written for DRF APIs send it.
KEYWORDS = (b"bearer", b"token")


class BearerTokenAuthentication(TokenAuthentication):
    """`Authorization: Bearer <token>` (or `Token <token>`) for an API token."""

    keyword = "Bearer"
    model = ApiToken

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "invalid Authorization header: use 'Bearer <token>'"
            )
        try:
            secret = parts[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("invalid token") from None
        return self.authenticate_credentials(secret)

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = ApiToken.objects.for_secret(key)
        if token is None:
            raise exceptions.AuthenticationFailed(
                "invalid token: it is wrong or was revoked; make a new one on the"
                " studio's API tokens page"
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("this token's user is inactive")
        token.touch()
        return token.user, token


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the token (an HTTP bearer scheme)."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
