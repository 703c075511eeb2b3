"""Forms of the registry pages: models, data assets, environments."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from ..models import DataAsset, ModelAsset
from .uploads import MultipleFileField, folder_file_names


class UploadMixin:
    """Plain files (or one zip) plus a browser folder upload with relative paths."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        files, folder = data.get("files") or [], data.get("folder") or []
        data["uploads"] = files + folder
        data["upload_names"] = [f.name for f in files] + self._folder_names(folder)
        return data

    def upload_arguments(self) -> dict[str, Any]:
        return {
            "uploads": self.cleaned_data["uploads"],
            "upload_names": self.cleaned_data["upload_names"],
        }

    def _folder_names(self, folder: list[UploadedFile]) -> list[str]:
        return folder_file_names(folder, self.cleaned_data.get("relative_paths") or "")


def parse_tags(text: str) -> dict[str, str]:
    """`key=value` lines as a dict."""
    tags = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"line {number} ({line.strip()!r}) is not key=value")
        tags[key.strip()] = value.strip()
    return tags


def _text(required: bool = False, **kwargs: Any) -> forms.CharField:
    return forms.CharField(required=required, strip=True, **kwargs)


class _AssetFormBase(forms.Form):
    description = _text(widget=forms.Textarea(attrs={"rows": 2}))
    tags = _text(
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "team=fraud"}),
        help_text="One key=value per line.",
    )

    def clean_tags(self) -> dict[str, str]:
        return parse_tags(self.cleaned_data["tags"])


class ModelRegisterForm(UploadMixin, _AssetFormBase):
    name = _text(
        max_length=128,
        help_text="Letters, digits, '.', '_', '-'. From MLflow: defaults to its name.",
    )
    type = forms.ChoiceField(
        required=False,
        choices=[("", "Detect (MLflow when an MLmodel file is present)")]
        + list(ModelAsset.Type.choices),
    )
    files = MultipleFileField(help_text="Model files, or one .zip of the folder.")
    folder = MultipleFileField(
        folder=True, paths_field="relative_paths", help_text="A whole model folder."
    )
    relative_paths = _text(widget=forms.HiddenInput)
    server_path = _text(
        max_length=1024, help_text="A folder (or one file) under an allowed root."
    )
    mlflow_uri = _text(
        max_length=512,
        label="MLflow model URI",
        help_text="models:/NAME/VERSION or models:/NAME@ALIAS",
    )

    field_order = ["name", "type", "files", "folder", "server_path", "mlflow_uri"]

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "declared_type": data["type"],
            "server_path": data["server_path"],
            "mlflow_uri": data["mlflow_uri"],
            "description": data["description"],
            "tags": data["tags"],
            **self.upload_arguments(),
        }


class DataRegisterForm(UploadMixin, _AssetFormBase):
    name = _text(required=True, max_length=128)
    type = forms.ChoiceField(choices=DataAsset.Type.choices, initial="uri_folder")
    files = MultipleFileField(help_text="Files, or one .zip for a uri_folder.")
    folder = MultipleFileField(
        folder=True,
        paths_field="relative_paths",
        help_text="A whole folder (uri_folder).",
    )
    relative_paths = _text(widget=forms.HiddenInput)
    url = _text(
        max_length=2048,
        label="URL",
        help_text="http(s); stored and fetched when a job runs.",
    )
    server_path = _text(max_length=2048, help_text="A path under an allowed root.")

    field_order = ["name", "type", "files", "folder", "url", "server_path"]

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "data_type": data["type"],
            "url": data["url"],
            "server_path": data["server_path"],
            "description": data["description"],
            "tags": data["tags"],
            **self.upload_arguments(),
        }


class EnvironmentCreateForm(forms.Form):
    name = _text(required=True, max_length=128)
    python_requirements = _text(
        label="pip requirements",
        widget=forms.Textarea(attrs={"rows": 8, "placeholder": "scikit-learn==1.9.1"}),
        help_text="One per line. Leave empty (and no conda file) to use the"
        " worker's own Python.",
    )
    conda_file = forms.FileField(
        required=False, help_text="A conda YAML file; its pip section is used."
    )
    description = _text(widget=forms.Textarea(attrs={"rows": 2}))

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "python_requirements": data["python_requirements"].splitlines(),
            "conda_file": data["conda_file"],
            "description": data["description"],
        }
