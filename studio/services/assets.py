"""Registering models, data assets and environments as new versions; reading them."""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, models, transaction
from django.db.models import QuerySet

from scoring_engine import SpecError
from scoring_engine.deployment import detect_model_type
from scoring_engine.environments import (
    normalize_requirements,
    read_conda_pip_requirements,
)

from .. import storage
from ..models import DataAsset, Environment, ModelAsset, Workspace
from ..models.assets import VersionedAsset

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MLFLOW_URI_RE = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$"
)
MLFLOW_OFF = (
    "import from MLflow is turned off: an operator sets STUDIO_MLFLOW_TRACKING_URI"
    " to the MLflow tracking server (an http(s) URL or a file store) to turn it on"
)
# MLmodel, requirements.txt and conda files are small; a huge one is not read.
TEXT_FILE_LIMIT = 1024 * 1024
REQUIREMENT_FILE_OPTION = re.compile(r"^(-r|-c|--requirement|--constraint)(\s|=|$)")


def check_asset_name(name: str, field: str = "name") -> str:
    if not name:
        raise ValidationError({field: "a name is required"})
    if not NAME_RE.match(name):
        raise ValidationError(
            {
                field: f"{name!r} is not a valid name: use letters, digits, '.', '_'"
                " or '-', starting with a letter or digit (at most 128)"
            }
        )
    return name


def latest_versions(model: type[VersionedAsset], workspace: Workspace) -> QuerySet:
    """One row per name (its newest version) with `version_count`, in one query."""
    versions = (
        model.objects.filter(
            workspace=models.OuterRef("workspace"), name=models.OuterRef("name")
        )
        .order_by()
        .values("name")
        .annotate(count=models.Count("pk"))
        .values("count")
    )
    return (
        model.objects.filter(workspace=workspace)
        .latest_versions()
        .annotate(version_count=models.Subquery(versions))
        .select_related("created_by")
        .order_by("name")
    )


def register_model(
    workspace: Workspace,
    user: Any,
    *,
    name: str = "",
    uploads: Sequence[UploadedFile] = (),
    upload_names: Sequence[str] | None = None,
    server_path: str = "",
    mlflow_uri: str = "",
    declared_type: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
) -> ModelAsset:
    """Register the next version of model `name` from exactly one source.

    Uploaded files (or one zip) are copied into the datastore; a server path
    under the allowed roots is referenced in place; an MLflow registry URI is
    resolved to a concrete version and its files copied. A folder holding an
    MLmodel file is an MLflow model whatever `declared_type` says. Raises
    ValidationError; on refusal nothing is written.
    """
    if sum(map(bool, (uploads, server_path, mlflow_uri))) != 1:
        raise ValidationError(
            "give exactly one source: files or a folder to upload, a server path,"
            " or an MLflow model URI"
        )
    if declared_type not in ("", *ModelAsset.Type.values):
        allowed = ", ".join(ModelAsset.Type.values)
        raise ValidationError({"type": f"must be one of {allowed}"})
    extra = {"description": description, "tags": tags or {}, "created_by": user}
    if mlflow_uri:
        return _import_mlflow_model(workspace, name, mlflow_uri, extra)
    check_asset_name(name)
    if server_path:
        path = storage.confine_server_path(server_path, "server_path")
        model_type, info = _inspect_model(path, declared_type, "server_path")
        return _create_version(ModelAsset, workspace, name, type=model_type,
                               path=str(path), mlflow=info,
                               source=f"server:{path}", **extra)  # fmt: skip
    with storage.staging() as staging:
        storage.save_uploads(uploads, staging, names=upload_names)
        root = storage.single_top_folder(staging)
        return _publish_model(workspace, name, root, declared_type, "upload", extra)


def _publish_model(
    workspace: Workspace,
    name: str,
    root: Path,
    declared_type: str,
    source: str,
    extra: dict[str, Any],
) -> ModelAsset:
    """Check a staged model, move it into the datastore, then create its row."""
    model_type, info = _inspect_model(root, declared_type, None)
    version = ModelAsset.objects.next_version(workspace, name)
    final = storage.publish(root, _version_folder(workspace, "models", name, version))
    try:
        return _create_version(ModelAsset, workspace, name, version, type=model_type,
                               path=str(final), mlflow=info, source=source,
                               **extra)  # fmt: skip
    except Exception:
        storage.discard(final)
        raise


def _inspect_model(
    path: Path, declared_type: str, field: str | None
) -> tuple[str, dict[str, Any]]:
    model_type = detect_model_type(path, declared_type or None)
    if model_type != ModelAsset.Type.MLFLOW:
        return model_type, {}
    info = read_mlflow_info(path) if path.is_dir() else {}
    if not info:
        message = (
            "an mlflow_model needs an MLmodel file in its top folder;"
            " add it or register the files as custom_model"
        )
        raise ValidationError({field: message} if field else message)
    return model_type, info


def _version_folder(workspace: Workspace, kind: str, name: str, version: int) -> Path:
    """`<workspace>/<kind>/<name>/<version>` in the datastore, or a unique sibling.

    A folder left by a registration that died before its row was written must
    not block that version number forever.
    """
    folder = storage.datastore(workspace.name, kind, name, str(version))
    if folder.exists():
        folder = folder.with_name(f"{version}-{uuid.uuid4().hex[:8]}")
    return folder


def _create_version(
    model: type[VersionedAsset],
    workspace: Workspace,
    name: str,
    version: int | None = None,
    **fields: Any,
) -> Any:
    """Create `name`'s next version (or `version`) of an asset row."""
    limit = model._meta.get_field("path").max_length if "path" in fields else 0
    if len(fields.get("path", "")) > limit > 0:
        raise ValidationError({"server_path": "the path is too long"})
    try:
        with transaction.atomic():
            version = version or model.objects.next_version(workspace, name)
            return model.objects.create(
                workspace=workspace, name=name, version=version, **fields
            )
    except IntegrityError:
        raise ValidationError(
            f"another version of '{name}' was registered at the same moment; try again"
        ) from None


def _import_mlflow_model(
    workspace: Workspace, name: str, mlflow_uri: str, extra: dict[str, Any]
) -> ModelAsset:
    tracking_uri = settings.STUDIO_MLFLOW_TRACKING_URI
    if not tracking_uri:
        raise ValidationError({"mlflow_uri": MLFLOW_OFF})
    match = MLFLOW_URI_RE.match(mlflow_uri.strip())
    if match is None:
        raise ValidationError(
            {
                "mlflow_uri": f"{mlflow_uri!r} is not a registered model URI: use"
                " models:/<name>/<version> or models:/<name>@<alias>"
            }
        )
    check_asset_name(name or match["name"])
    with storage.staging() as staging:
        version, root = _download_registered_model(
            tracking_uri, match["name"], match["version"], match["alias"], staging
        )
        storage.check_tree(root, storage.max_upload_bytes())
        return _publish_model(workspace, name or match["name"], root, "mlflow_model",
                              f"models:/{match['name']}/{version}", extra)  # fmt: skip


def _download_registered_model(
    tracking_uri: str, name: str, version: str | None, alias: str | None, target: Path
) -> tuple[str, Path]:
    """Resolve a registry version or alias to a concrete version, then fetch it.

    The client is given the URI explicitly: the process-wide MLFLOW_TRACKING_URI
    belongs to the engine's own runs.
    """
    # mlflow is imported here, not at module level: it costs ~1 s of start-up.
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    wanted = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    try:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        if alias:
            found = client.get_model_version_by_alias(name, alias)
        else:
            found = client.get_model_version(name, version)
        if str(found.status).upper() != "READY":
            raise ValidationError(
                {"mlflow_uri": f"{wanted} is {found.status}, not READY; try later"}
            )
        source = client.get_model_version_download_uri(name, found.version)
        local = download_artifacts(
            artifact_uri=source, dst_path=str(target), tracking_uri=tracking_uri
        )
    except (MlflowException, OSError) as exc:
        raise ValidationError({"mlflow_uri": _mlflow_problem(wanted, exc)}) from None
    return str(found.version), Path(local)


def _mlflow_problem(wanted: str, exc: Exception) -> str:
    text = str(getattr(exc, "message", exc)).strip().splitlines()[0][:500]
    code = getattr(exc, "error_code", "")
    # A missing alias comes back as INVALID_PARAMETER_VALUE "... not found".
    if code == "RESOURCE_DOES_NOT_EXIST" or text.endswith("not found."):
        return f"{wanted} not found in the MLflow registry ({text})"
    if "MLFLOW_ALLOW_FILE_STORE" in text:
        return (
            "STUDIO_MLFLOW_TRACKING_URI names a file store, which MLflow opens only"
            " when the studio runs with MLFLOW_ALLOW_FILE_STORE=true; an operator"
            " sets it"
        )
    if "Model registry functionality is unavailable" in text:
        return (
            "STUDIO_MLFLOW_TRACKING_URI names a database store, which needs the full"
            " mlflow package; use the tracking server's http(s) URL or a file store"
        )
    return f"could not fetch {wanted} from MLflow: {text}"


def read_mlflow_info(path: Path) -> dict[str, Any]:
    """Flavors, signature and requirements from an MLflow model folder."""
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        nested = [c / "MLmodel" for c in path.iterdir() if (c / "MLmodel").is_file()]
        if not nested:
            return {}
        mlmodel = nested[0]
    try:
        data = yaml.safe_load(_read_text(mlmodel)) or {}
    except yaml.YAMLError as exc:
        raise ValidationError(
            f"the model's MLmodel file is not valid YAML: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError("the model's MLmodel file is not a YAML mapping")
    signature = data.get("signature") or {}
    requirements_file = mlmodel.parent / "requirements.txt"
    requirements = (
        normalize_requirements(_read_text(requirements_file).splitlines())
        if requirements_file.is_file()
        else []
    )
    return {
        "flavors": sorted((data.get("flavors") or {}).keys()),
        "mlflow_version": str(data.get("mlflow_version", "")),
        "signature_inputs": _load_json_text(signature.get("inputs")),
        "signature_outputs": _load_json_text(signature.get("outputs")),
        "requirements": requirements,
    }


def _read_text(path: Path) -> str:
    data, more = storage.read_head(path, TEXT_FILE_LIMIT)
    if more:
        raise ValidationError(f"{path.name} is larger than {TEXT_FILE_LIMIT} bytes")
    return data.decode("utf-8", errors="replace")


def _load_json_text(value: Any) -> Any:
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
    upload_names: Sequence[str] | None = None,
    url: str = "",
    server_path: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
) -> DataAsset:
    """Register the next version of data asset `name` from uploads, a URL or a path.

    A URL is stored and fetched when a job runs. Raises ValidationError; on
    refusal nothing is written.
    """
    check_asset_name(name)
    if data_type not in DataAsset.Type.values:
        raise ValidationError(
            {"type": f"must be one of {', '.join(DataAsset.Type.values)}"}
        )
    if sum(map(bool, (uploads, url, server_path))) != 1:
        raise ValidationError(
            "give exactly one source: files to upload, a URL, or a server path"
        )
    extra = {"description": description, "tags": tags or {}, "created_by": user}
    if url:
        location = check_url(url, "url")
        return _create_version(DataAsset, workspace, name, type=data_type,
                               path=location, **extra)  # fmt: skip
    if server_path:
        path = storage.confine_server_path(server_path, "server_path")
        _check_data_type(path, data_type, "server_path")
        return _create_version(DataAsset, workspace, name, type=data_type,
                               path=str(path), **extra)  # fmt: skip
    if data_type == DataAsset.Type.FILE and len(uploads) != 1:
        raise ValidationError(
            {"type": "a uri_file data asset is exactly one file; use uri_folder"}
        )
    with storage.staging() as staging:
        storage.save_uploads(
            uploads, staging, unzip=data_type == DataAsset.Type.FOLDER,
            names=upload_names,
        )  # fmt: skip
        version = DataAsset.objects.next_version(workspace, name)
        final = storage.publish(
            staging, _version_folder(workspace, "data", name, version)
        )
    location = next(final.iterdir()) if data_type == DataAsset.Type.FILE else final
    try:
        return _create_version(DataAsset, workspace, name, version, type=data_type,
                               path=str(location), **extra)  # fmt: skip
    except Exception:
        storage.discard(final)
        raise


def check_url(url: str, field: str) -> str:
    """An http(s) URL with a host, no spaces, no credentials, at most 2048 chars."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url) if len(url) <= 2048 else None
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(char.isspace() or not char.isprintable() for char in url)
    ):
        raise ValidationError({field: f"{url[:100]!r} is not an http or https URL"})
    if parts.username or parts.password:
        # Every reader of the workspace would see them on the asset's page.
        raise ValidationError({field: "the URL must not hold a user name or password"})
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
    """Register the next version of environment `name`; [] = the worker's Python.

    Requirement lines and the pip section of a conda file are combined.
    """
    check_asset_name(name)
    requirements = check_requirements(python_requirements, "python_requirements")
    if conda_file is not None:
        requirements += _conda_requirements(conda_file)
    return _create_version(Environment, workspace, name, created_by=user,
                           python_requirements=requirements,
                           description=description)  # fmt: skip


def check_requirements(lines: Sequence[str], field: str) -> list[str]:
    """pip requirement lines, normalized; files they would reference are refused."""
    requirements = normalize_requirements(list(lines))
    for line in requirements:
        if REQUIREMENT_FILE_OPTION.match(line):
            raise ValidationError(
                {field: f"{line!r}: list the requirements themselves, not a file"}
            )
        if len(line) > 1000 or any(not char.isprintable() for char in line):
            raise ValidationError({field: f"{line[:100]!r} is not a requirement"})
    return requirements


def _conda_requirements(conda_file: UploadedFile) -> list[str]:
    if (conda_file.size or 0) > TEXT_FILE_LIMIT:
        raise ValidationError({"conda_file": "the conda file is larger than 1 MB"})
    # A private temporary folder: nothing of a refused file reaches the datastore.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(conda_file.name or "conda.yml").name or "conda.yml")
        with open(path, "wb") as handle:
            for chunk in conda_file.chunks():
                handle.write(chunk)
        try:
            lines = read_conda_pip_requirements(path)
        except SpecError as exc:
            raise ValidationError({"conda_file": str(exc)}) from None
    return check_requirements(lines, "conda_file")
