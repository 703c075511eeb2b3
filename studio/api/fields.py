"""Serializer fields of the API: JSON objects in JSON or multipart, documented names."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


def check_text(value: Any) -> None:
    """No NUL or lone surrogate anywhere: PostgreSQL and file paths refuse them."""
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value):
            raise serializers.ValidationError("text must not hold NUL or surrogates")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key)
            check_text(item)
    elif isinstance(value, list):
        for item in value:
            check_text(item)


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(serializers.JSONField):
    """A JSON object; in a multipart request, a JSON object as a string."""

    default_error_messages = {"not_object": "must be a JSON object"}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        check_text(value)
        return value


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class TagsField(JSONObjectField):
    """String keys to string values (`{"team": "fraud"}`)."""

    default_error_messages = {"not_strings": "tags map strings to strings"}

    def to_internal_value(self, data: Any) -> dict[str, str]:
        value = super().to_internal_value(data)
        if not all(isinstance(item, str) for item in value.values()):
            self.fail("not_strings")
        return value


class NameField(serializers.CharField):
    """A name the service checks (its message states the rule); the schema shows it.

    The rule is documentation only, so refusals keep the service's wording.
    """

    def __init__(self, rule: re.Pattern[str], **kwargs: Any) -> None:
        self.rule = rule
        super().__init__(**kwargs)


class NameFieldSchema(OpenApiSerializerFieldExtension):
    target_class = NameField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict:
        schema = auto_schema._map_serializer_field(
            self.target, direction, bypass_extensions=True
        )
        pattern = self.target.rule.pattern.removeprefix("^").removesuffix("$")
        return {**schema, "pattern": f"^{pattern}$"}


def name_field(rule: re.Pattern[str], max_length: int, **kwargs: Any) -> NameField:
    return NameField(rule, max_length=max_length, **kwargs)


def text_field(max_length: int | None = None, **kwargs: Any) -> serializers.CharField:
    kwargs.setdefault("default", "")
    return serializers.CharField(allow_blank=True, max_length=max_length, **kwargs)


def files_field(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), default=list, **kwargs
    )


def names_field(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=1024),
        required=False,
        default=None,
        help_text=help_text,
    )
