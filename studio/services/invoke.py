"""Invoking an endpoint: validate everything, then create and enqueue a job."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from scoring_engine import SpecError, apply_overrides

from .. import storage
from ..models import BatchEndpoint, DataAsset, EndpointState, Job
from .assets import check_url
from .endpoints import deployment_spec, resolve_versioned

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")
UNSUPPORTED_INPUT = (
    "unsupported input: give one of a registered data asset (name:version or"
    " name@latest), an http(s) URL, or local files uploaded with the request"
)


def invoke(
    endpoint: BatchEndpoint,
    user: Any,
    *,
    deployment_name: str = "",
    data_asset: str = "",
    url: str = "",
    uploads: Sequence[Any] = (),
    output_path: str = "",
    job_name: str = "",
    overrides: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Job:
    """Validate an invocation fully, then create a queued job and enqueue it.

    Raises ValidationError (field -> DESIGN section 5 message); on refusal
    nothing is written.
    """
    if endpoint.state != EndpointState.READY:
        raise ValidationError(f"batch endpoint '{endpoint.name}' is being deleted")
    deployment = endpoint.current_deployment(deployment_name)
    if deployment is None:
        which = f"deployment '{deployment_name}'" if deployment_name else "a deployment"
        raise ValidationError(
            {
                "deployment_name": f"batch endpoint '{endpoint.name}' has no {which};"
                " create one first"
            }  # fmt: skip
        )
    if sum(map(bool, (data_asset, url, uploads))) != 1:
        raise ValidationError({"input": UNSUPPORTED_INPUT})
    try:
        spec = apply_overrides(deployment_spec(deployment), overrides or {})
    except SpecError as exc:
        raise ValidationError({"overrides": str(exc)}) from exc
    workspace = endpoint.workspace
    name = job_name or _new_job_name(endpoint.name)
    if not JOB_NAME_RE.match(name):
        raise ValidationError(
            {"job_name": f"{name!r}: 3 to 64 letters, digits, '-' or '_'"}
        )
    if Job.objects.filter(name=name).exists():
        raise ValidationError({"job_name": f"a job named '{name}' already exists"})
    job_dir = _output_location(workspace.name, name, output_path)
    input_description: dict[str, Any]
    input_type = "uri_folder"
    if data_asset:
        asset = resolve_versioned(DataAsset, "data_asset", workspace, data_asset)
        input_description = {"data_asset": f"{asset.name}:{asset.version}"}
        input_type = asset.type
        input_path = asset.path
    elif url:
        check_url(url, "url")
        input_description, input_path = {"url": url}, ""
    else:
        input_description = {"uploads": len(uploads)}
        input_path = ""
    uploads_dir = storage.datastore(workspace.name, "inputs", name)
    if uploads:
        staging = storage.new_staging_dir()
        try:
            storage.save_uploads(uploads, staging, unzip=False)
            storage.publish(staging, uploads_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        input_path = str(uploads_dir)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                workspace=workspace,
                name=name,
                endpoint=endpoint,
                endpoint_name=endpoint.name,
                deployment=deployment,
                deployment_label=f"{deployment.name} r{deployment.revision}",
                input=input_description,
                input_path=input_path,
                input_type=input_type,
                job_dir=str(job_dir),
                overrides=dict(overrides or {}),
                settings=spec.settings.as_dict(),
                tags=dict(tags or {}),
                created_by=user,
            )
            transaction.on_commit(
                lambda: async_task("studio.tasks.run_job_task", job.pk)
            )
            return job
    except Exception:
        shutil.rmtree(uploads_dir, ignore_errors=True)
        raise


def _new_job_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _output_location(workspace_name: str, job_name: str, output_path: str) -> Path:
    """The job folder: `jobs/<name>` in the datastore, or a given datastore path."""
    root = storage.datastore(workspace_name)
    if output_path:
        pure = PurePosixPath(output_path.strip())
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise ValidationError(
                {
                    "output_path": f"{output_path!r} must be a relative path in the"
                    " workspace's datastore, without '..'"
                }  # fmt: skip
            )
        location = root.joinpath(*pure.parts)
    else:
        location = root / "jobs" / job_name
    if location.exists():
        raise ValidationError(
            {
                "output_path": f"output location {output_path or 'jobs/' + job_name}"
                " already exists; nothing was overwritten. A new output path is"
                " needed for every invocation"
            }  # fmt: skip
        )
    return location
