"""The demo `make run` opens on: user, workspace, model, data, endpoint, one job."""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

from .models import (
    BatchEndpoint,
    DataAsset,
    Job,
    JobStatus,
    Membership,
    ModelAsset,
    Role,
    Workspace,
)
from .samples import save_sklearn_model, write_feature_csvs
from .services.assets import register_data, register_model
from .services.endpoints import create_deployment, create_endpoint
from .services.invoke import invoke
from .tasks import run_job_task

USERNAME = "demo"
WORKSPACE = "demo"
MODEL = "demo-classifier"
DATA = "demo-data"
ENDPOINT = "demo"
DEPLOYMENT = "default"
DATA_FILES = 10
DATA_ROWS = 100
# Five mini-batches over two scoring processes, sampled every second: enough for
# the job page's progress, logs and charts to show something.
DEPLOYMENT_SETTINGS = {
    "mini_batch_size": 2,
    "max_concurrency_per_instance": 2,
    "resource_monitor_interval": 1,
}


class DemoError(Exception):
    """The demo could not be completed; the message says why."""


@dataclass
class Demo:
    """What the demo consists of, and which parts this run created."""

    user: User
    password: str
    workspace: Workspace
    endpoint: BatchEndpoint
    job: Job
    created: list[str] = field(default_factory=list)


def seed_demo() -> Demo:
    """Create whatever part of the demo is missing; existing parts are kept.

    Raises DemoError when the demo job does not complete, ValidationError
    when a service refuses a part (say, the demo endpoint is being deleted).
    """
    created: list[str] = []
    user, password = _user(created)
    workspace = _workspace(user, created)
    model = _model(workspace, user, created)
    data = _data(workspace, user, created)
    endpoint = _endpoint(workspace, user, model, created)
    job = _job(endpoint, user, data, created)
    return Demo(user, password, workspace, endpoint, job, created)


def _user(created: list[str]) -> tuple[User, str]:
    """The demo user, with the password kept in STUDIO_DATA_DIR so reruns agree."""
    password_file = Path(settings.STUDIO_DATA_DIR) / "demo-password.txt"
    if password_file.exists():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.touch(mode=0o600)
        password_file.write_text(password + "\n")
    user, new = User.objects.get_or_create(username=USERNAME)
    if new or not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    if new:
        created.append(f"user {USERNAME}")
    return user, password


def _workspace(user: User, created: list[str]) -> Workspace:
    workspace, new = Workspace.objects.get_or_create(
        name=WORKSPACE,
        defaults={"description": "A sample MLflow model scored on sample data"},
    )
    Membership.objects.update_or_create(
        workspace=workspace, user=user, defaults={"role": Role.OWNER}
    )
    if new:
        created.append(f"workspace {WORKSPACE}")
    return workspace


def _model(workspace: Workspace, user: User, created: list[str]) -> ModelAsset:
    model = ModelAsset.objects.filter(workspace=workspace, name=MODEL).first()
    if model is not None:
        return model
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_sklearn_model(Path(tmp) / "model", n_estimators=10)
        model = register_model(
            workspace,
            user,
            name=MODEL,
            uploads=_uploads(folder),
            description="A small random forest saved as an MLflow model",
        )
    created.append(f"model {model}")
    return model


def _data(workspace: Workspace, user: User, created: list[str]) -> DataAsset:
    data = DataAsset.objects.filter(workspace=workspace, name=DATA).first()
    if data is not None:
        return data
    with tempfile.TemporaryDirectory() as tmp:
        write_feature_csvs(Path(tmp), n_files=DATA_FILES, rows=DATA_ROWS)
        data = register_data(
            workspace,
            user,
            name=DATA,
            data_type=DataAsset.Type.FOLDER,
            uploads=_uploads(Path(tmp)),
            description=f"{DATA_FILES} CSV files of {DATA_ROWS} rows, columns f0..f3",
        )
    created.append(f"data asset {data}")
    return data


def _uploads(folder: Path) -> list[SimpleUploadedFile]:
    """A flat folder's files as the browser would upload them."""
    return [
        SimpleUploadedFile(path.name, path.read_bytes())
        for path in sorted(folder.iterdir())
        if path.is_file()
    ]


def _endpoint(
    workspace: Workspace, user: User, model: ModelAsset, created: list[str]
) -> BatchEndpoint:
    endpoint = BatchEndpoint.objects.filter(workspace=workspace, name=ENDPOINT).first()
    if endpoint is None:
        endpoint = create_endpoint(
            workspace,
            user,
            name=ENDPOINT,
            description="Scores the demo data with the demo model",
        )
        created.append(f"endpoint {ENDPOINT}")
    if endpoint.current_deployment(DEPLOYMENT) is None:
        create_deployment(
            endpoint,
            user,
            name=DEPLOYMENT,
            model=f"{model.name}:{model.version}",
            settings=DEPLOYMENT_SETTINGS,
            description="No-code MLflow deployment",
            make_default=True,
        )
        created.append(f"deployment {ENDPOINT}/{DEPLOYMENT}")
    return endpoint


def _job(
    endpoint: BatchEndpoint, user: User, data: DataAsset, created: list[str]
) -> Job:
    done = Job.objects.for_workspace(endpoint.workspace).filter(
        endpoint_name=endpoint.name, status=JobStatus.COMPLETED
    )
    job = done.first()
    if job is not None:
        return job
    job = invoke(
        endpoint,
        user,
        data_asset=f"{data.name}:{data.version}",
        tags={"source": "demo"},
    )
    # Run here so the job is complete before the studio starts. The delivery
    # invoke() queued then finds the job claimed and returns (tasks claim rows).
    run_job_task(job.pk)
    job.refresh_from_db()
    if job.status != JobStatus.COMPLETED:
        raise DemoError(
            f"the demo job {job.name} ended {job.status}: {job.error or '(no cause)'};"
            f" see {job.job_dir}"
        )
    created.append(f"job {job.name}")
    return job
