"""UI forms, one module per area; field rules come from the engine and services."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError


def show_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Attach a service's ValidationError to the fields it names, else the form.

    A message for a field the form does not have keeps the field's name.
    """
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.error_dict.items():
        if field in form.fields:
            form.add_error(field, errors)
        else:
            form.add_error(None, [f"{field}: {m}" for e in errors for m in e])
