"""Batch endpoints and deployment revisions: create, update, delete, pick default."""

from __future__ import annotations

import difflib
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django_q.tasks import async_task

from scoring_engine import (
    DeploymentSpec,
    EnvironmentSpec,
    ModelSpec,
    Settings,
    SpecError,
)
from scoring_engine.config import OVERRIDABLE, SETTING_FIELDS, build_settings
from scoring_engine.deployment import check_scorable

from .. import storage
from ..models import (
    BatchDeployment,
    BatchEndpoint,
    EndpointState,
    Environment,
    Job,
    JobStatus,
    ModelAsset,
    Workspace,
)

ENDPOINT_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{2,31}")
# Every name a setting error may start with; anything else is not one field's fault.
SETTING_NAMES = frozenset({*SETTING_FIELDS, *OVERRIDABLE})
# Copied code skips what tools leave behind; it is never part of the scoring code.
CODE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv")


def check_endpoint_name(name: str, field: str = "name", kind: str = "endpoint") -> str:
    if not ENDPOINT_NAME_RE.fullmatch(name or ""):
        raise ValidationError(
            {
                field: f"{name!r} is not a valid {kind} name: 3 to 32 characters,"
                " starting with a letter, then letters, digits or '-'"
            }
        )
    return name


def setting_error(exc: SpecError) -> ValidationError:
    """The engine's message, attached to the setting it names when it names one."""
    key = exc.message.split(":", 1)[0].removeprefix("retry_settings.")
    key = key.removeprefix("resources.")
    field = key if key in SETTING_NAMES else NON_FIELD_ERRORS
    return ValidationError({field: str(exc)})


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


def _require_ready(endpoint: BatchEndpoint) -> None:
    if endpoint.state == EndpointState.DELETING:
        raise ValidationError(
            f"batch endpoint '{endpoint.name}' is being deleted; it takes no new"
            " deployments or jobs"
        )


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
    """Remove a deleting endpoint with its deployments; jobs keep their history.

    Queued jobs would find their deployment gone, so they end canceled here;
    running jobs already hold their deployment and finish normally.
    """
    with transaction.atomic():
        endpoint = BatchEndpoint.objects.filter(
            pk=endpoint_id, state=EndpointState.DELETING
        ).first()
        if endpoint is None:
            return
        Job.objects.filter(endpoint=endpoint, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELED,
            finished_at=timezone.now(),
            error=f"canceled: batch endpoint '{endpoint.name}' was deleted",
        )
        endpoint.delete()


def create_deployment(
    endpoint: BatchEndpoint,
    user: Any,
    *,
    name: str,
    model: str,
    code_uploads: Sequence[Any] = (),
    code_names: Sequence[str] | None = None,
    code_path: str = "",
    keep_code: bool = False,
    scoring_script: str = "",
    environment: str = "",
    compute: str = "default",
    settings: Mapping[str, Any] | None = None,
    description: str = "",
    make_default: bool = False,
) -> BatchDeployment:
    """A new revision of deployment `name` (revision 1 when it is new).

    Code comes from uploads (files, with `code_names` as their paths in an
    uploaded folder, or one zip), a server path under the allowed roots
    (copied, so the revision never changes), or, with `keep_code`, the
    current revision's code. Everything (model, code, environment, settings,
    the no-code rule) is validated before anything is written. Raises
    ValidationError keyed by field.
    """
    _require_ready(endpoint)
    check_endpoint_name(name, "name", "deployment")
    workspace = endpoint.workspace
    model_asset = resolve_versioned(ModelAsset, "model", workspace, model)
    env = None
    if environment:
        env = resolve_versioned(Environment, "environment", workspace, environment)
    try:
        effective = build_settings(settings or {})
    except SpecError as exc:
        raise setting_error(exc) from exc
    base = endpoint.current_deployment(name) if keep_code else None
    _check_code_sources(code_uploads, code_path, keep_code, base, scoring_script)
    with storage.staging() as staging:
        if base is not None:
            code_dir: Path | None = Path(base.code_path)
            scoring_script = scoring_script or base.scoring_script
        else:
            code_dir = _stage_code(code_uploads, code_names, code_path, staging)
        _check_scorable(model_asset, code_dir, scoring_script, env, effective)
        return _save_revision(
            endpoint,
            user,
            staged=code_dir if base is None else None,
            name=name,
            model=model_asset,
            code_path=str(code_dir or ""),
            scoring_script=scoring_script if code_dir else "",
            environment=env,
            compute=compute or "default",
            settings=effective.as_dict(),
            description=description,
            make_default=make_default,
        )


def _check_scorable(
    model: ModelAsset,
    code_dir: Path | None,
    scoring_script: str,
    env: Environment | None,
    effective: Settings,
) -> None:
    if code_dir is not None:
        _check_scoring_script(code_dir, scoring_script)
    spec = DeploymentSpec(
        model=ModelSpec(Path(model.path), model.type),
        code_dir=code_dir,
        scoring_script=scoring_script or None,
        environment=_environment_spec(env),
        settings=effective,
    )
    try:
        check_scorable(spec)
    except SpecError as exc:
        raise ValidationError(str(exc)) from exc


def _check_code_sources(
    uploads: Sequence[Any],
    code_path: str,
    keep_code: bool,
    base: BatchDeployment | None,
    scoring_script: str,
) -> None:
    given = sum(map(bool, (uploads, code_path, keep_code)))
    if given > 1:
        raise ValidationError(
            {
                "code": "give one source of code: an uploaded folder or zip, a server"
                " path, or the current revision's code"
            }
        )
    if keep_code and (base is None or not base.code_path):
        raise ValidationError(
            {"code": "there is no current revision with code to keep; upload code"}
        )
    if scoring_script and not given:
        raise ValidationError(
            {"scoring_script": "a scoring script needs code: upload its folder or zip"}
        )


def _stage_code(
    uploads: Sequence[Any],
    names: Sequence[str] | None,
    code_path: str,
    staging: Path,
) -> Path | None:
    """A private copy of the code in `staging`, or None for no code."""
    if code_path:
        source = storage.confine_server_path(code_path, "code_path")
        if not source.is_dir():
            raise ValidationError({"code_path": f"{code_path} is not a folder"})
        try:
            storage.check_tree(source, storage.max_upload_bytes())
        except ValidationError as exc:
            raise ValidationError({"code_path": exc.messages}) from None
        shutil.copytree(source, staging / "code", ignore=CODE_IGNORE)
        return staging / "code"
    if uploads:
        try:
            storage.save_uploads(uploads, staging / "upload", names=names)
        except ValidationError as exc:
            raise ValidationError({"code": exc.messages}) from None
        return storage.single_top_folder(staging / "upload")
    return None


def _check_scoring_script(code_dir: Path, scoring_script: str) -> None:
    if not scoring_script:
        raise ValidationError(
            {"scoring_script": "name the scoring script, a file in the code folder"}
        )
    try:
        relative = storage.safe_relative_path(scoring_script)
    except ValidationError as exc:
        raise ValidationError({"scoring_script": exc.messages}) from None
    if not (code_dir / relative).is_file():
        raise ValidationError(
            {"scoring_script": f"{scoring_script} is not a file in the code folder"}
        )


def _environment_spec(env: Environment | None) -> EnvironmentSpec | None:
    if env is None:
        return None
    return EnvironmentSpec(tuple(env.python_requirements))


def _save_revision(
    endpoint: BatchEndpoint,
    user: Any,
    *,
    staged: Path | None,
    name: str,
    make_default: bool,
    **fields: Any,
) -> BatchDeployment:
    """Publish staged code, write the next revision; a failure leaves neither."""
    published = None
    if staged is not None:
        folder = storage.datastore(endpoint.workspace.name, "code", uuid.uuid4().hex)
        published = storage.publish(staged, folder)
        fields["code_path"] = str(published)
    try:
        with transaction.atomic():
            top = BatchDeployment.objects.filter(
                endpoint=endpoint, name=name
            ).aggregate(top=models.Max("revision"))["top"]
            deployment = BatchDeployment.objects.create(
                endpoint=endpoint,
                name=name,
                revision=(top or 0) + 1,
                created_by=user,
                **fields,
            )
            if make_default or not endpoint.default_deployment:
                set_default_deployment(endpoint, name)
            return deployment
    except BaseException as exc:
        if published is not None:
            storage.discard(published)
        if isinstance(exc, IntegrityError):
            raise ValidationError(
                {
                    "name": f"another revision of '{name}' was saved at the same time;"
                    " submit again"
                }  # fmt: skip
            ) from None
        raise


def set_default_deployment(endpoint: BatchEndpoint, name: str) -> None:
    """Make `name` the deployment an invocation without a deployment name uses."""
    _require_ready(endpoint)
    if not endpoint.deployments.filter(name=name).exists():
        raise ValidationError(
            {
                "default_deployment": f"batch deployment '{name}' not found"
                f" on endpoint '{endpoint.name}'"
            }
        )
    endpoint.default_deployment = name
    endpoint.save(update_fields=["default_deployment"])


def resolve_versioned(
    model: type, kind: str, workspace: Workspace, reference: str, field: str = ""
) -> Any:
    """`name:version`, `name@latest` or a bare name (latest); `azureml:` allowed.

    Raises ValidationError on `field` (default: `kind`) naming the kind and
    close names when nothing matches.
    """
    field = field or kind
    reference = (reference or "").strip().removeprefix("azureml:")
    name, version = reference, None
    if "@" in reference:
        name, label = reference.split("@", 1)
        if label != "latest":
            raise ValidationError({field: f"{reference!r}: only @latest is supported"})
    elif ":" in reference:
        name, raw_version = reference.rsplit(":", 1)
        if not raw_version.isdigit():
            raise ValidationError({field: f"{reference!r}: version must be a number"})
        version = int(raw_version)
    rows = model.objects.filter(workspace=workspace, name=name)
    if version is not None:
        found = rows.filter(version=version).first()
    else:
        found = rows.order_by("-version").first()
    if found is None:
        names = model.objects.filter(workspace=workspace).values_list("name", flat=True)
        close = difflib.get_close_matches(name, sorted(set(names)), n=3)
        hint = f"; close names: {', '.join(close)}" if close else ""
        what = f"{name}:{version}" if version is not None else name
        raise ValidationError({field: f"{kind} '{what}' not found{hint}"})
    return found


def deployment_spec(deployment: BatchDeployment) -> DeploymentSpec:
    """The engine's view of a stored deployment revision."""
    return DeploymentSpec(
        model=ModelSpec(Path(deployment.model.path), deployment.model.type),
        code_dir=Path(deployment.code_path) if deployment.code_path else None,
        scoring_script=deployment.scoring_script or None,
        environment=_environment_spec(deployment.environment),
        settings=build_settings(deployment.settings),
        name=f"{deployment.name}-r{deployment.revision}",
    )
