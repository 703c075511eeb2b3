"""API errors: service refusals as 400 or 409; not-found messages with close names."""

from __future__ import annotations

import difflib
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

# Service refusals that are conflicts with the current state (DESIGN section 5:
# a name in use or being deleted, an output location that exists), not bad input.
CONFLICT_MARKERS = ("already exists", "being deleted", "already ended",
                    "at the same moment", "at the same time")  # fmt: skip

# How many names (the first by the model's ordering) a miss is compared with.
CLOSE_NAME_POOL = 2000


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict with the current state"
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the services' Django ValidationError as 400 or 409.

    Http404 and PermissionDenied keep their messages (DRF passes them on).
    """
    if isinstance(exc, DjangoValidationError):
        exc = _service_error(exc)
    return drf_exception_handler(exc, context)


def _service_error(exc: DjangoValidationError) -> exceptions.APIException:
    if hasattr(exc, "error_dict"):
        non_field = api_settings.NON_FIELD_ERRORS_KEY
        detail = {
            (non_field if field == NON_FIELD_ERRORS else field): messages
            for field, messages in exc.message_dict.items()
        }
    else:
        detail = {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
    codes = {getattr(error, "code", None) for error in _errors(exc)}
    if "conflict" in codes or any(
        marker in message for message in exc.messages for marker in CONFLICT_MARKERS
    ):
        return Conflict(detail)
    return exceptions.ValidationError(detail)


def _errors(exc: DjangoValidationError) -> list[DjangoValidationError]:
    if hasattr(exc, "error_dict"):
        return [error for errors in exc.error_dict.values() for error in errors]
    return exc.error_list


def with_close_names(exc: Http404, wanted: str, names: QuerySet) -> Http404:
    """The not-found message plus the closest existing names, if any."""
    # Bounded: a workspace may hold many thousands of jobs.
    pool = {name for (name,) in names[:CLOSE_NAME_POOL]}
    close = difflib.get_close_matches(wanted, sorted(pool), n=3)
    return Http404(f"{exc}; close names: {', '.join(close)}") if close else exc
