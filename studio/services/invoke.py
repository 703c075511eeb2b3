"""Invoking an endpoint: validate everything, then create and enqueue a job."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from scoring_engine import SpecError, apply_overrides

from .. import storage
from ..models import BatchDeployment, BatchEndpoint, DataAsset, EndpointState, Job
from .endpoints import deployment_spec, resolve_versioned, setting_error
from .jobs import enqueue_job

JOB_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,63}")
ACCEPTED_INPUTS = (
    "give one of: a registered data asset (name:version or name@latest), an"
    " http(s) URL, or local files uploaded with the request"
)
UNSUPPORTED_INPUT = f"unsupported input: {ACCEPTED_INPUTS}"
# Top-level datastore folders the studio writes itself; a job's output there
# could collide with a later asset version or another job's inputs.
RESERVED_AREAS = frozenset({"models", "data", "code", "inputs", ".staging"})


# Longest free text accepted for a name, reference, URL or output path; a job
# folder path must fit Job.job_dir (2048) with the datastore in front of it.
MAX_TEXT = 1024


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

    The job folder (default `jobs/<job name>`, or `output_path` in the
    workspace's datastore) is reserved as an empty folder. Raises
    ValidationError (field -> DESIGN section 5 message); on refusal nothing
    is written.
    """
    if endpoint.state != EndpointState.READY:
        raise ValidationError(f"batch endpoint '{endpoint.name}' is being deleted")
    _check_text(
        deployment_name=deployment_name,
        data_asset=data_asset,
        url=url,
        output_path=output_path,
        job_name=job_name,
    )
    deployment = _deployment(endpoint, deployment_name)
    _check_one_input(data_asset, url, uploads)
    try:
        spec = apply_overrides(deployment_spec(deployment), overrides or {})
    except SpecError as exc:
        raise setting_error(exc) from exc
    name = job_name or _new_job_name(endpoint.name)
    _check_job_name(name)
    job_dir = _output_location(endpoint.workspace.name, name, output_path)
    _check_not_nested(job_dir, output_path or f"jobs/{name}")
    source = _describe_input(endpoint, data_asset, url, uploads)
    _reserve(job_dir, output_path or f"jobs/{name}")
    uploads_dir = storage.datastore(endpoint.workspace.name, "inputs", name)
    try:
        if uploads:
            source["input_path"] = str(_save_inputs(uploads, uploads_dir))
        with transaction.atomic():
            job = Job.objects.create(
                workspace=endpoint.workspace,
                name=name,
                endpoint=endpoint,
                endpoint_name=endpoint.name,
                deployment=deployment,
                deployment_label=f"{deployment.name} r{deployment.revision}",
                job_dir=str(job_dir),
                overrides=dict(overrides or {}),
                settings=spec.settings.as_dict(),
                tags=dict(tags or {}),
                created_by=user,
                **source,
            )
            enqueue_job(job.pk)
            return job
    except BaseException:
        storage.discard(uploads_dir)
        storage.discard(job_dir)
        raise


def _deployment(endpoint: BatchEndpoint, deployment_name: str) -> BatchDeployment:
    deployment = endpoint.current_deployment(deployment_name)
    if deployment is not None:
        return deployment
    if deployment_name:
        message = (
            f"batch deployment '{deployment_name}' not found on endpoint"
            f" '{endpoint.name}'"
        )
    else:
        message = (
            f"batch endpoint '{endpoint.name}' has no deployment yet; create one first"
        )
    raise ValidationError({"deployment_name": message})


def _check_one_input(data_asset: str, url: str, uploads: Sequence[Any]) -> None:
    given = sum(map(bool, (data_asset, url, uploads)))
    if given == 0:
        raise ValidationError({"input": f"no input given: {ACCEPTED_INPUTS}"})
    if given > 1:
        raise ValidationError(
            {"input": f"more than one input given: {ACCEPTED_INPUTS}"}
        )
    if url and not re.match(r"https?://[^\s/]+", url):
        raise ValidationError({"url": f"unsupported input {url!r}: {ACCEPTED_INPUTS}"})
    if "://" in data_asset:
        raise ValidationError(
            {"data_asset": f"unsupported input {data_asset!r}: {ACCEPTED_INPUTS}"}
        )


def _check_job_name(name: str) -> None:
    if not JOB_NAME_RE.fullmatch(name):
        raise ValidationError(
            {
                "job_name": f"{name!r} is not a valid job name: 3 to 64 letters,"
                " digits, '-' or '_', starting with a letter or digit"
            }
        )
    if Job.objects.filter(name=name).exists():
        raise ValidationError(
            {"job_name": f"a job named '{name}' already exists; choose another name"}
        )


def _describe_input(
    endpoint: BatchEndpoint, data_asset: str, url: str, uploads: Sequence[Any]
) -> dict[str, Any]:
    """The Job fields describing its input (uploads get their path once saved)."""
    if url:
        return {"input": {"url": url}, "input_path": "", "input_type": "uri_folder"}
    if uploads:
        return {
            "input": {"uploads": len(uploads)},
            "input_path": "",
            "input_type": "uri_folder",
        }
    asset = resolve_versioned(
        DataAsset, "data asset", endpoint.workspace, data_asset, "data_asset"
    )
    label = f"{asset.name}:{asset.version}"
    if asset.is_url:
        # The job's task downloads URL inputs; a registered URL is fetched the same way.
        return {
            "input": {"data_asset": label, "url": asset.path},
            "input_path": "",
            "input_type": asset.type,
        }
    if not (
        storage.is_readable_location(Path(asset.path)) and Path(asset.path).exists()
    ):
        raise ValidationError(
            {
                "data_asset": f"data asset '{label}' points to {asset.path}, which no"
                " longer exists; register a new version"
            }
        )
    return {
        "input": {"data_asset": label},
        "input_path": asset.path,
        "input_type": asset.type,
    }


def _save_inputs(uploads: Sequence[Any], target: Path) -> Path:
    with storage.staging() as staging:
        try:
            storage.save_uploads(uploads, staging / "files", unzip=False)
        except ValidationError as exc:
            raise ValidationError({"input_files": exc.messages}) from None
        return storage.publish(staging / "files", target)


def _new_job_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _check_text(**fields: str) -> None:
    """Refuse text no path, URL or database column can hold: NUL, control
    characters, lone surrogates, or more than MAX_TEXT characters."""
    for field, value in fields.items():
        if not value:
            continue
        if len(value) > MAX_TEXT:
            raise ValidationError({field: f"must be at most {MAX_TEXT} characters"})
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError({field: "must be valid Unicode text"}) from None
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValidationError({field: "must not contain control characters"})


def _check_not_nested(location: Path, shown: str) -> None:
    """A job folder may not hold, or sit inside, another job's folder: the
    engine refuses a folder that is not empty, so both jobs would suffer."""
    ancestors = [str(parent) for parent in location.parents]
    inside = f"{location}/"
    if (
        Job.objects.filter(job_dir__in=ancestors).exists()
        or Job.objects.filter(job_dir__startswith=inside).exists()
    ):
        raise ValidationError(
            {
                "output_path": f"output location {shown} is inside another job's folder"
                " or holds one; choose a path of its own"
            }  # fmt: skip
        )


def _output_location(workspace_name: str, job_name: str, output_path: str) -> Path:
    """The job folder: `jobs/<name>` in the datastore, or a given datastore path."""
    root = storage.datastore(workspace_name)
    if output_path:
        pure = PurePosixPath(output_path.strip().replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise ValidationError(
                {
                    "output_path": f"{output_path!r} must be a relative path in the"
                    " workspace's datastore, without '..'"
                }  # fmt: skip
            )
        if pure.parts[0] in RESERVED_AREAS:
            raise ValidationError(
                {
                    "output_path": f"{output_path!r} is inside the studio's own"
                    f" '{pure.parts[0]}' folder; choose another output path, e.g."
                    f" outputs/{job_name}"
                }  # fmt: skip
            )
        if any(len(part.encode()) > 255 for part in pure.parts):
            raise ValidationError(
                {
                    "output_path": "each folder name in output_path must be at most"
                    " 255 bytes"
                }  # fmt: skip
            )
        location, shown = root.joinpath(*pure.parts), pure.as_posix()
    else:
        location, shown = root / "jobs" / job_name, f"jobs/{job_name}"
    try:
        exists = location.exists()
    except OSError as exc:
        raise ValidationError(
            {"output_path": f"cannot use output location {shown}: {exc.strerror}"}
        ) from None
    if exists:
        raise _location_exists(shown)
    return location


def _reserve(location: Path, shown: str) -> None:
    """Create the empty job folder; an invocation racing for it gets refused."""
    try:
        location.mkdir(parents=True)
    except FileExistsError:
        raise _location_exists(shown) from None
    except OSError as exc:
        raise ValidationError(
            {"output_path": f"cannot create output location {shown}: {exc.strerror}"}
        ) from None


def _location_exists(shown: str) -> ValidationError:
    return ValidationError(
        {
            "output_path": f"output location {shown} already exists; nothing was"
            " overwritten. A new output path is needed for every invocation"
        }
    )
