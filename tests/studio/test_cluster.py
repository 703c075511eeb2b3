"""A job invoked in the studio runs on a real `manage.py qcluster` subprocess."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import Success

from studio.models import Job, JobStatus
from studio.samples import save_sklearn_model, write_feature_csvs
from studio.services.endpoints import create_deployment, create_endpoint
from tests.conftest import REPO
from tests.factories import zip_of
from tests.studio.test_jobs_support import file_database, wait_for  # noqa: F401

FILES, ROWS = 4, 25


@contextmanager
def qcluster(data_dir: Path, log: Path) -> Iterator[subprocess.Popen]:
    """`manage.py qcluster` on the test's database and datastore, stopped after.

    It is stopped the way DESIGN section 8 says works: SIGTERM to the main
    process only (to the whole group it can hang in "stopping").
    """
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(data_dir),
        "STUDIO_DATASTORE": str(settings.STUDIO_DATASTORE),
        "STUDIO_ENV_CACHE": str(settings.STUDIO_ENV_CACHE),
        "STUDIO_NODE_NAME": settings.STUDIO_NODE_NAME,
        "STUDIO_ALLOWED_ROOTS": os.pathsep.join(
            map(str, settings.STUDIO_ALLOWED_ROOTS)
        ),
        "STUDIO_SYNC_TASKS": "false",
        "STUDIO_WORKERS": "2",
        # The broker's queue is named after the cluster: the same as this process.
        "STUDIO_CLUSTER_NAME": settings.Q_CLUSTER["name"],
    }
    with log.open("wb") as sink:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield cluster
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for process in psutil.Process(cluster.pid).children(recursive=True):
                process.kill()
            cluster.kill()
            cluster.wait()
            pytest.fail(f"qcluster did not stop on SIGTERM:\n{log.read_text()}")
        finally:
            print(log.read_text())  # pytest shows it when the test fails


def descendants(pid: int) -> dict[int, tuple[int, str]]:
    """(parent id, command line) of each process below `pid`, by process id."""
    found = {}
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            found[child.pid] = (child.ppid(), " ".join(child.cmdline()))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.slow
@pytest.mark.usefixtures("file_database")
def test_a_real_cluster_runs_an_invoked_mlflow_job(cast, tmp_path, monkeypatch):
    model_dir = save_sklearn_model(tmp_path / "model", n_estimators=5)
    files = write_feature_csvs(tmp_path / "features", n_files=FILES, rows=ROWS)
    owner = cast.client("owner")
    registered = owner.post(
        reverse("studio:model-register", args=["team"]),
        {"name": "clf", "files": SimpleUploadedFile("clf.zip", zip_of(model_dir))},
    )
    assert registered.status_code == 302, registered.content.decode()
    endpoint = create_endpoint(cast.workspace, cast.owner, name="scorer")
    create_deployment(
        endpoint,
        cast.owner,
        name="blue",
        model="clf:1",
        settings={
            "mini_batch_size": 2,
            "max_concurrency_per_instance": 2,
            "resource_monitor_interval": 0,
        },
    )
    endpoint.refresh_from_db()
    monkeypatch.setattr(Conf, "SYNC", False)  # the cluster runs it, not this test
    log = tmp_path / "qcluster.log"

    with qcluster(tmp_path, log) as cluster:
        uploads = [SimpleUploadedFile(f.name, f.read_bytes()) for f in files]
        invoked = cast.client("contributor").post(
            reverse("studio:endpoint-invoke", args=["team", "scorer"]),
            {"input_files": uploads},
        )
        assert invoked.status_code == 302, invoked.content.decode()
        job = Job.objects.get()
        seen: dict[int, tuple[int, str]] = {}

        def job_ended() -> bool:
            seen.update(descendants(cluster.pid))
            status = Job.objects.values_list("status", flat=True).get(pk=job.pk)
            return status in JobStatus.TERMINAL

        wait_for(job_ended, timeout=120, what="the job to end")

    assert cluster.returncode == 0, log.read_text()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, (job.error, log.read_text())
    assert (job.mini_batches_succeeded, job.items_succeeded) == (FILES // 2, FILES)
    assert Success.objects.filter(func="studio.tasks.run_job_task").count() == 1
    output = pd.read_csv(Path(job.job_dir, "outputs/predictions.csv"))
    assert len(output) == FILES * ROWS
    assert list(output["file_name"]) == [f.name for f in files for _ in range(ROWS)]
    assert list(output["prediction"]) == list(expected_predictions(model_dir, files))
    # Scoring ran in child processes of a django-q worker, never in a django-q
    # process itself.
    host_pids = scoring_pids(Path(job.job_dir))
    django_q_pids = {pid for pid, (_, cmd) in seen.items() if "qcluster" in cmd}
    assert host_pids and host_pids <= set(seen)
    assert not host_pids & django_q_pids
    assert all(seen[pid][0] in django_q_pids for pid in host_pids)


def expected_predictions(model_dir: Path, files: list[Path]) -> list:
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(str(model_dir))
    return model.predict(pd.concat(pd.read_csv(f) for f in files).astype(float))


def scoring_pids(job_dir: Path) -> set[int]:
    path = job_dir / "logs/sys/job_report/processed_mini-batches.csv"
    with path.open(newline="") as handle:
        return {int(row["pid"]) for row in csv.DictReader(handle)}
