"""Builders and fixtures the jobs tests share (no tests of its own).

`make_job` rows need no files; `deploy_script` makes a real deployment of a
fixture scoring script through the services; `file_database` gives a test a
SQLite file that other threads and processes see.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from studio.models import (
    BatchDeployment,
    BatchEndpoint,
    Job,
    JobStatus,
    ModelAsset,
    Workspace,
)
from studio.services.assets import create_environment, register_data, register_model
from studio.services.endpoints import create_deployment, create_endpoint
from tests.conftest import SCRIPTS, write_text_files

_numbers = iter(range(1, 1_000_000))


def make_endpoint(workspace: Workspace, name: str = "scorer") -> BatchEndpoint:
    """An endpoint with deployment `blue` r1 over a model row (no files)."""
    model = ModelAsset.objects.create(
        workspace=workspace,
        name=f"{name}-model",
        version=1,
        type=ModelAsset.Type.CUSTOM,
        path="/nowhere",
    )
    endpoint = BatchEndpoint.objects.create(
        workspace=workspace, name=name, default_deployment="blue"
    )
    BatchDeployment.objects.create(endpoint=endpoint, name="blue", model=model)
    return endpoint


def make_job(workspace: Workspace, **fields: Any) -> Job:
    """A job row; `endpoint=` defaults to a fresh endpoint's blue r1."""
    endpoint = fields.pop("endpoint", None) or make_endpoint(
        workspace, f"ep{next(_numbers)}"
    )
    deployment = endpoint.deployments.first()
    name = fields.pop("name", f"job-{next(_numbers):05d}")
    values: dict[str, Any] = {
        "workspace": workspace,
        "name": name,
        "endpoint": endpoint,
        "endpoint_name": endpoint.name,
        "deployment": deployment,
        "deployment_label": f"{deployment.name} r{deployment.revision}",
        "input": {"data_asset": "texts:1"},
        "input_path": "/data/texts",
        "job_dir": f"/datastore/jobs/{name}",
        "settings": {"mini_batch_size": "10", "max_retries": 3, "timeout": 30},
    }
    if fields.get("status") == JobStatus.RUNNING:
        values["started_at"] = timezone.now() - timedelta(seconds=40)
    values.update(fields)
    return Job.objects.create(**values)


def deploy_script(
    workspace: Workspace,
    user: Any,
    script: str,
    *,
    files: int = 6,
    endpoint_name: str = "texts",
    **deployment_settings: Any,
) -> BatchEndpoint:
    """A real endpoint running a tests/fixtures/scripts script on text files.

    The data asset `texts:1` holds `files` small text files.
    """
    server = Path(settings.STUDIO_ALLOWED_ROOTS[0])
    shutil.copytree(SCRIPTS, server / "code")
    (server / "model").mkdir()
    (server / "model" / "weights.txt").write_text("1\n")
    write_text_files(server / "texts", files)
    register_model(workspace, user, name="model", server_path=str(server / "model"))
    register_data(
        workspace,
        user,
        name="texts",
        data_type="uri_folder",
        server_path=str(server / "texts"),
    )
    create_environment(workspace, user, name="worker-python")
    endpoint = create_endpoint(workspace, user, name=endpoint_name)
    create_deployment(
        endpoint,
        user,
        name="blue",
        model="model:1",
        code_path=str(server / "code"),
        scoring_script=script,
        environment="worker-python:1",
        settings={"resource_monitor_interval": 0, **deployment_settings},
    )
    endpoint.refresh_from_db()
    return endpoint


def wait_for(
    condition: Callable[[], Any], timeout: float = 30, what: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def file_database(
    transactional_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point the default database at a SQLite file cloned from the test database.

    pytest-django's SQLite test database lives in memory, out of reach of a
    `qcluster` subprocess, and shared-cache memory databases fail with "table
    is locked" instead of waiting when two threads write. Overriding
    django_db_modify_db_settings would not do either: it is session-scoped, so
    which test runs first would decide. The clone holds the migrated schema
    and whatever rows the test made before; the in-memory database is left
    as it was, and emptied as usual after the test.
    """
    memory = connections["default"]
    memory.ensure_connection()
    path = tmp_path / "studio.sqlite3"
    target = sqlite3.connect(path)
    memory.connection.backup(target)
    target.close()
    file_settings = {**memory.settings_dict, "NAME": str(path)}
    # Threads open their connections from connections.settings; this thread
    # gets a fresh connection object (closing the memory one would drop it).
    monkeypatch.setitem(connections.settings, "default", file_settings)
    connections["default"] = connections.create_connection("default")
    try:
        yield path
    finally:
        connections["default"].close()
        connections["default"] = memory
