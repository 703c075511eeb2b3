"""`manage.py demo`: seeds every part once, and reruns print the same sign-in."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from studio import demo
from studio.models import (
    BatchDeployment,
    BatchEndpoint,
    DataAsset,
    Job,
    JobStatus,
    Membership,
    ModelAsset,
    Role,
    Workspace,
)


def run_demo() -> str:
    out = StringIO()
    call_command("demo", "--port", "8123", stdout=out)
    return out.getvalue()


def password_in(output: str) -> str:
    return re.search(r"Sign in:\s+demo / (\S+)", output).group(1)


@pytest.mark.slow
@pytest.mark.django_db
def test_it_seeds_the_demo_once_with_a_completed_job(settings, tmp_path: Path):
    settings.STUDIO_DATA_DIR = tmp_path / "data"

    first, second = run_demo(), run_demo()

    workspace = Workspace.objects.get()
    user = User.objects.get()
    assert Membership.objects.get().role == Role.OWNER
    assert ModelAsset.objects.get().type == ModelAsset.Type.MLFLOW
    assert DataAsset.objects.get().type == DataAsset.Type.FOLDER
    endpoint = BatchEndpoint.objects.get()
    assert endpoint.default_deployment == BatchDeployment.objects.get().name
    job = Job.objects.get()
    assert job.status == JobStatus.COMPLETED
    predictions = Path(job.job_dir) / "outputs" / "predictions.csv"
    assert predictions.is_relative_to(settings.STUDIO_DATASTORE)
    rows = predictions.read_text().splitlines()
    assert len(rows) == 1 + demo.DATA_FILES * demo.DATA_ROWS
    assert "created job" in first and "created" not in second
    assert password_in(first) == password_in(second)
    assert user.check_password(password_in(first))
    assert f"http://127.0.0.1:8123/w/{workspace.name}/jobs/{job.name}/" in second
