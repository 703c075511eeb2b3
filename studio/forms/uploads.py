"""Upload fields shared by every form: many files in one input, browser folders."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one input; empty files are fine (an empty __init__.py).

    With `folder=True` the input picks a whole folder; static/studio/js/
    folder_upload.js then sends each file's path in it to the hidden field
    named by `paths_field`, because Django keeps only base names.
    """

    def __init__(
        self, *, folder: bool = False, paths_field: str = "", **kwargs: Any
    ) -> None:
        attrs: dict[str, Any] = {}
        if folder:
            attrs = {"webkitdirectory": True}
            attrs["data-relative-paths"] = f"id_{paths_field}"
        kwargs.setdefault("widget", MultipleFileInput(attrs=attrs))
        kwargs.setdefault("required", False)
        super().__init__(allow_empty_file=True, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        single = super().clean
        items = data if isinstance(data, list | tuple) else [data]
        return [single(item, initial) for item in items if item]


def folder_file_names(folder: list[UploadedFile], raw_paths: str) -> list[str]:
    """Each uploaded folder file's path in its folder, checked against its name.

    `raw_paths` is the JSON list folder_upload.js sent; without it the base
    names are used. Raises ValidationError when list and files disagree.
    """
    try:
        paths = json.loads(raw_paths) if raw_paths else []
    except ValueError:
        paths = None
    if not paths or not folder:
        return [f.name for f in folder]
    if (
        not isinstance(paths, list)
        or len(paths) != len(folder)
        or any(
            not isinstance(p, str) or PurePosixPath(p).name != f.name
            for p, f in zip(paths, folder, strict=False)
        )
    ):
        raise ValidationError(
            "the folder's file list does not match its files; upload it as a zip"
        )
    return paths
