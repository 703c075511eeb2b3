"""Registering models, data assets and environments as new versions."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from scoring_engine import SpecError
from scoring_engine.deployment import detect_model_type
from scoring_engine.environments import (
    normalize_requirements,
    read_conda_pip_requirements,
)

from .. import storage
from ..models import DataAsset, Environment, ModelAsset, Workspace

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_asset_name(name: str, field: str = "name") -> str:
    if not NAME_RE.match(name or ""):
        raise ValidationError(
            {
                field: f"{name!r} is not a valid name: use letters, digits, '.', '_'"
                " or '-', starting with a letter or digit (at most 128)"
            }
        )
    return name


def register_model(
    workspace: Workspace,
    user: Any,
    *,
    name: str,
    uploads: Sequence[UploadedFile] = (),
    server_path: str = "",
    declared_type: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
) -> ModelAsset:
    """Register the next version of model `name` from uploads or a server path.

    Uploaded files (or one zip) are copied into the datastore; a server path
    under the allowed roots is referenced in place. A folder holding an
    MLmodel file is an MLflow model whatever `declared_type` says.
    """
    check_asset_name(name)
    if bool(uploads) == bool(server_path):
        raise ValidationError("give either files to upload or a server path, not both")
    if server_path:
        path = storage.confine_server_path(server_path, "server_path")
        return _create_model(workspace, user, name, path, declared_type, description,
                             tags, source=f"server:{path}")  # fmt: skip
    staging = storage.new_staging_dir()
    try:
        storage.save_uploads(uploads, staging)
        root = storage.single_top_folder(staging)
        version = ModelAsset.objects.next_version(workspace, name)
        final = storage.datastore(workspace.name, "models", name, str(version))
        storage.publish(root, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        return _create_model(workspace, user, name, final, declared_type, description,
                             tags, source="upload", version=version)  # fmt: skip
    except Exception:
        shutil.rmtree(final, ignore_errors=True)
        raise


def _create_model(
    workspace: Workspace,
    user: Any,
    name: str,
    path: Path,
    declared_type: str,
    description: str,
    tags: dict[str, str] | None,
    source: str,
    version: int | None = None,
) -> ModelAsset:
    model_type = detect_model_type(path, declared_type or None)
    mlflow_info = read_mlflow_info(path) if model_type == "mlflow_model" else {}
    with transaction.atomic():
        return ModelAsset.objects.create(
            workspace=workspace,
            name=name,
            version=version or ModelAsset.objects.next_version(workspace, name),
            type=model_type,
            path=str(path),
            source=source,
            mlflow=mlflow_info,
            description=description,
            tags=tags or {},
            created_by=user,
        )


def read_mlflow_info(path: Path) -> dict[str, Any]:
    """Flavors, signature and requirements from an MLflow model folder."""
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        nested = [c / "MLmodel" for c in path.iterdir() if (c / "MLmodel").is_file()]
        if not nested:
            return {}
        mlmodel = nested[0]
    try:
        data = yaml.safe_load(mlmodel.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValidationError(
            f"the model's MLmodel file is not valid YAML: {exc}"
        ) from exc
    signature = data.get("signature") or {}
    requirements_file = mlmodel.parent / "requirements.txt"
    requirements = (
        normalize_requirements(requirements_file.read_text().splitlines())
        if requirements_file.is_file()
        else []
    )
    return {
        "flavors": sorted((data.get("flavors") or {}).keys()),
        "mlflow_version": data.get("mlflow_version", ""),
        "signature_inputs": _load_json_text(signature.get("inputs")),
        "signature_outputs": _load_json_text(signature.get("outputs")),
        "requirements": requirements,
    }


def _load_json_text(value: Any) -> Any:
    import json

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def register_data(
    workspace: Workspace,
    user: Any,
    *,
    name: str,
    data_type: str,
    uploads: Sequence[UploadedFile] = (),
    url: str = "",
    server_path: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
) -> DataAsset:
    """Register the next version of data asset `name` from uploads, a URL or a path."""
    check_asset_name(name)
    if data_type not in DataAsset.Type.values:
        raise ValidationError(
            {"type": f"must be one of {', '.join(DataAsset.Type.values)}"}
        )
    if sum(map(bool, (uploads, url, server_path))) != 1:
        raise ValidationError(
            "give exactly one source: files to upload, a URL, or a server path"
        )
    final: Path | None = None
    if url:
        check_url(url, "url")
        location = url
    elif server_path:
        path = storage.confine_server_path(server_path, "server_path")
        _check_data_type(path, data_type, "server_path")
        location = str(path)
    else:
        if data_type == DataAsset.Type.FILE and len(uploads) != 1:
            raise ValidationError({"type": "a uri_file data asset is exactly one file"})
        staging = storage.new_staging_dir()
        try:
            storage.save_uploads(uploads, staging, unzip=data_type == "uri_folder")
            version = DataAsset.objects.next_version(workspace, name)
            final = storage.publish(
                staging, storage.datastore(workspace.name, "data", name, str(version))
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        location = str(next(final.iterdir())) if data_type == "uri_file" else str(final)
    try:
        with transaction.atomic():
            return DataAsset.objects.create(
                workspace=workspace,
                name=name,
                version=DataAsset.objects.next_version(workspace, name),
                type=data_type,
                path=location,
                description=description,
                tags=tags or {},
                created_by=user,
            )
    except Exception:
        if final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise


def check_url(url: str, field: str) -> str:
    if not re.match(r"^https?://[^\s/]+", url or ""):
        raise ValidationError({field: f"{url!r} is not an http or https URL"})
    return url


def _check_data_type(path: Path, data_type: str, field: str) -> None:
    if data_type == DataAsset.Type.FILE and not path.is_file():
        raise ValidationError({field: f"{path} is not a file; use uri_folder"})
    if data_type == DataAsset.Type.FOLDER and not path.is_dir():
        raise ValidationError({field: f"{path} is not a folder; use uri_file"})


def create_environment(
    workspace: Workspace,
    user: Any,
    *,
    name: str,
    python_requirements: Sequence[str] = (),
    conda_file: UploadedFile | None = None,
    description: str = "",
) -> Environment:
    """Register the next version of environment `name`; [] = the worker's Python."""
    check_asset_name(name)
    requirements = normalize_requirements(list(python_requirements))
    if conda_file is not None:
        staging = storage.new_staging_dir()
        try:
            path = staging / "conda.yml"
            path.write_bytes(conda_file.read())
            requirements += read_conda_pip_requirements(path)
        except SpecError as exc:
            raise ValidationError({"conda_file": exc.message}) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    with transaction.atomic():
        return Environment.objects.create(
            workspace=workspace,
            name=name,
            version=Environment.objects.next_version(workspace, name),
            python_requirements=requirements,
            description=description,
            created_by=user,
        )
