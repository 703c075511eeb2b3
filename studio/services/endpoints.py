"""Batch endpoints and deployment revisions: create, update, delete, pick default."""

from __future__ import annotations

import difflib
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django_q.tasks import async_task

from scoring_engine import DeploymentSpec, EnvironmentSpec, ModelSpec, SpecError
from scoring_engine.config import build_settings
from scoring_engine.deployment import check_scorable

from .. import storage
from ..models import (
    BatchDeployment,
    BatchEndpoint,
    EndpointState,
    Environment,
    ModelAsset,
    Workspace,
)

ENDPOINT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,31}$")


def check_endpoint_name(name: str, field: str = "name") -> str:
    if not ENDPOINT_NAME_RE.match(name or ""):
        raise ValidationError(
            {
                field: f"{name!r} is not a valid endpoint name: 3 to 32 characters,"
                " starting with a letter, then letters, digits or '-'"
            }
        )
    return name


def create_endpoint(
    workspace: Workspace, user: Any, *, name: str, description: str = ""
) -> BatchEndpoint:
    """A new, empty endpoint; refuses a name in use or still being deleted."""
    check_endpoint_name(name)
    existing = BatchEndpoint.objects.filter(workspace=workspace, name=name).first()
    if existing is not None:
        raise ValidationError({"name": _name_taken(existing)})
    try:
        with transaction.atomic():
            return BatchEndpoint.objects.create(
                workspace=workspace,
                name=name,
                description=description,
                state=EndpointState.READY,
                created_by=user,
            )
    except IntegrityError:
        raise ValidationError(
            {"name": f"batch endpoint '{name}' already exists; choose another name"}
        ) from None


def _name_taken(endpoint: BatchEndpoint) -> str:
    if endpoint.state == EndpointState.DELETING:
        return (
            f"batch endpoint '{endpoint.name}' is still being deleted; another name is"
            " needed until its deletion finishes"
        )
    return f"batch endpoint '{endpoint.name}' already exists; choose another name"


def delete_endpoint(endpoint: BatchEndpoint) -> None:
    """Mark the endpoint deleting; a task removes it and frees the name."""
    updated = BatchEndpoint.objects.filter(
        pk=endpoint.pk, state=EndpointState.READY
    ).update(state=EndpointState.DELETING)
    if not updated:
        raise ValidationError(
            f"batch endpoint '{endpoint.name}' is already being deleted"
        )
    endpoint.state = EndpointState.DELETING
    transaction.on_commit(
        lambda: async_task("studio.tasks.delete_endpoint_task", endpoint.pk)
    )


def finish_endpoint_deletion(endpoint_id: int) -> None:
    """Remove a deleting endpoint with its deployments; jobs keep their history."""
    with transaction.atomic():
        BatchEndpoint.objects.filter(
            pk=endpoint_id, state=EndpointState.DELETING
        ).delete()


def create_deployment(
    endpoint: BatchEndpoint,
    user: Any,
    *,
    name: str,
    model: str,
    code_uploads: Sequence[Any] = (),
    code_path: str = "",
    scoring_script: str = "",
    environment: str = "",
    compute: str = "default",
    settings: Mapping[str, Any] | None = None,
    description: str = "",
    make_default: bool = False,
) -> BatchDeployment:
    """A new revision of deployment `name` (revision 1 when it is new).

    Validates everything (model, code, environment, settings, the no-code
    rule) before anything is written.
    """
    if endpoint.state != EndpointState.READY:
        raise ValidationError(_name_taken(endpoint))
    check_endpoint_name(name, "name")
    workspace = endpoint.workspace
    model_asset = resolve_versioned(ModelAsset, "model", workspace, model)
    env = (
        resolve_versioned(Environment, "environment", workspace, environment)
        if environment
        else None
    )
    try:
        effective = build_settings(settings or {})
    except SpecError as exc:
        raise ValidationError(exc.message) from exc
    if bool(code_uploads) and bool(code_path):
        raise ValidationError({"code": "upload code or give a server path, not both"})
    code_dir: Path | None = None
    staging: Path | None = None
    if code_path:
        code_dir = storage.confine_server_path(code_path, "code_path")
    elif code_uploads:
        staging = storage.new_staging_dir()
        storage.save_uploads(code_uploads, staging)
        code_dir = storage.single_top_folder(staging)
    try:
        if code_dir is not None and not (code_dir / (scoring_script or "")).is_file():
            raise ValidationError(
                {"scoring_script": f"{scoring_script or '(none)'} is not in the code"}
            )
        spec = DeploymentSpec(
            model=ModelSpec(Path(model_asset.path), model_asset.type),
            code_dir=code_dir,
            scoring_script=scoring_script or None,
            environment=EnvironmentSpec(tuple(env.python_requirements))
            if env
            else None,
            settings=effective,
        )
        try:
            check_scorable(spec)
        except SpecError as exc:
            raise ValidationError(str(exc)) from exc
        if staging is not None:
            code_dir = storage.publish(
                code_dir, storage.datastore(workspace.name, "code", uuid.uuid4().hex)
            )
        with transaction.atomic():
            revision = (
                BatchDeployment.objects.filter(endpoint=endpoint, name=name).count() + 1
            )
            deployment = BatchDeployment.objects.create(
                endpoint=endpoint,
                name=name,
                revision=revision,
                model=model_asset,
                code_path=str(code_dir or ""),
                scoring_script=scoring_script if code_dir else "",
                environment=env,
                compute=compute or "default",
                settings=effective.as_dict(),
                description=description,
                created_by=user,
            )
            if make_default or not endpoint.default_deployment:
                set_default_deployment(endpoint, name)
            return deployment
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def set_default_deployment(endpoint: BatchEndpoint, name: str) -> None:
    if not endpoint.deployments.filter(name=name).exists():
        raise ValidationError(
            {
                "default_deployment": f"deployment '{name}' not found"
                f" on '{endpoint.name}'"
            }
        )
    endpoint.default_deployment = name
    endpoint.save(update_fields=["default_deployment"])


def resolve_versioned(
    model: type, kind: str, workspace: Workspace, reference: str
) -> Any:
    """`name:version`, `name@latest` or a bare name (latest); `azureml:` allowed."""
    reference = (reference or "").strip().removeprefix("azureml:")
    name, version = reference, None
    if "@" in reference:
        name, label = reference.split("@", 1)
        if label != "latest":
            raise ValidationError({kind: f"{reference!r}: only @latest is supported"})
    elif ":" in reference:
        name, raw_version = reference.rsplit(":", 1)
        if not raw_version.isdigit():
            raise ValidationError({kind: f"{reference!r}: version must be a number"})
        version = int(raw_version)
    rows = model.objects.filter(workspace=workspace, name=name)
    found = (
        rows.filter(version=version).first()
        if version
        else rows.order_by("-version").first()
    )
    if found is None:
        names = model.objects.filter(workspace=workspace).values_list("name", flat=True)
        close = difflib.get_close_matches(name, sorted(set(names)), n=3)
        hint = f"; close names: {', '.join(close)}" if close else ""
        what = f"{name}:{version}" if version else name
        raise ValidationError({kind: f"{kind} '{what}' not found{hint}"})
    return found


def deployment_spec(deployment: BatchDeployment) -> DeploymentSpec:
    """The engine's view of a stored deployment revision."""
    env = deployment.environment
    return DeploymentSpec(
        model=ModelSpec(Path(deployment.model.path), deployment.model.type),
        code_dir=Path(deployment.code_path) if deployment.code_path else None,
        scoring_script=deployment.scoring_script or None,
        environment=EnvironmentSpec(tuple(env.python_requirements)) if env else None,
        settings=build_settings(deployment.settings),
        name=f"{deployment.name}-r{deployment.revision}",
    )
