"""`manage.py job show|stream|list|cancel|download` on real jobs and job rows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse
from django_q.conf import Conf

from studio.models import Job, JobStatus
from studio.tasks import run_job_task
from tests.conftest import REPO, write_text_files
from tests.studio import test_command_support as support
from tests.studio.test_cluster import qcluster
from tests.studio.test_command_support import (
    create_script_endpoint,
    run,
    run_json,
)
from tests.studio.test_jobs_support import (  # noqa: F401 - fixture
    file_database,
    make_job,
    wait_for,
)

azure_example = support.azure_example
mlflow_model_dir = support.mlflow_model_dir
FILES = 6


def invoke(folder: Path, *extra: str) -> str:
    """Invoke endpoint `texts` on FILES new text files; the job's name."""
    inputs = folder / "inputs"
    write_text_files(inputs, FILES)
    return run("batch-endpoint", "invoke", "-n", "texts", "--input", str(inputs),
               "--query", "name", "-o", "tsv", *extra).strip()  # fmt: skip


@pytest.fixture
def finished_job(cast, tmp_path, django_capture_on_commit_callbacks) -> Job:
    """A real job of ok.py over FILES text files, run to completion."""
    create_script_endpoint(tmp_path, "ok.py")
    with django_capture_on_commit_callbacks(execute=True):
        name = invoke(tmp_path)
    job = Job.objects.get(name=name)
    assert job.status == JobStatus.COMPLETED, job.error
    return job


def test_it_shows_a_job_with_its_cause_and_page(cast):
    job = make_job(
        cast.workspace,
        status=JobStatus.FAILED,
        mini_batches_total=4,
        mini_batches_succeeded=3,
        mini_batches_failed=1,
        error="run() raised ValueError for file_003.txt",
        error_log="logs/user/error/node-a/process000.txt",
    )

    shown = run_json("job", "show", job.name, user="reader")
    status = run("job", "show", "--name", job.name, "--query", "status")
    tsv = run("job", "show", job.name, "--query", "status", "-o", "tsv")
    done = run("job", "show", job.name, "--query", "counts.mini_batches_done")

    assert shown["status"] == "failed"
    assert shown["error"] == job.error
    assert shown["error_log"] == job.error_log
    assert shown["counts"]["mini_batches_failed"] == 1
    assert shown["percent"] == 100
    assert shown["studio_url"] == reverse("studio:job-detail", args=["team", job.name])
    assert (status, tsv, done) == ('"failed"\n', "failed\n", "4\n")


def test_it_names_a_missing_job_and_close_names(cast):
    make_job(cast.workspace, name="nightly-scoring")

    with pytest.raises(CommandError) as caught:
        run("job", "show", "nightly-scorin")

    assert str(caught.value) == (
        "job 'nightly-scorin' not found in workspace 'team'; close names:"
        " nightly-scoring"
    )


def test_it_lists_jobs_by_endpoint_and_status(cast):
    first = make_job(cast.workspace, status=JobStatus.COMPLETED)
    make_job(cast.workspace, status=JobStatus.QUEUED, endpoint=first.endpoint)
    make_job(cast.workspace, status=JobStatus.COMPLETED)

    by_endpoint = run_json("job", "list", "--endpoint", first.endpoint_name,
                           "--query", "name")  # fmt: skip
    completed = run_json("job", "list", "--status", "completed", "--query", "name")
    both = run_json("job", "list", "-e", first.endpoint_name, "-s", "completed",
                    "--query", "name")  # fmt: skip
    table = run("job", "list", "-o", "table").splitlines()

    assert len(by_endpoint) == 2 and first.name in by_endpoint
    assert len(completed) == 2
    assert both == [first.name]
    assert table[0].split() == [
        "name", "status", "endpoint_name", "deployment", "percent",
    ]  # fmt: skip
    assert len(table) == 2 + 3
    with pytest.raises(CommandError, match="invalid choice: 'done'"):
        run("job", "list", "--status", "done")


def test_it_cancels_a_queued_job(cast):
    job = make_job(cast.workspace, status=JobStatus.QUEUED)

    shown = run_json("job", "cancel", job.name, user="contributor")

    assert shown["status"] == JobStatus.CANCELED
    assert Job.objects.get(pk=job.pk).error == "canceled by request"


def test_it_says_an_ended_job_cannot_be_canceled(cast):
    job = make_job(cast.workspace, status=JobStatus.COMPLETED)

    with pytest.raises(CommandError) as caught:
        run("job", "cancel", job.name)

    assert str(caught.value) == (
        f"job '{job.name}' already ended (completed); only queued or running jobs"
        " can be canceled"
    )


def test_a_reader_cannot_cancel(cast):
    job = make_job(cast.workspace, status=JobStatus.QUEUED)

    with pytest.raises(CommandError, match="needs the contributor role"):
        run("job", "cancel", job.name, user="reader")

    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


def test_it_downloads_the_outputs_and_with_all_the_logs(finished_job, tmp_path):
    outputs, everything = tmp_path / "outputs-only", tmp_path / "everything"

    shown = run_json("job", "download", finished_job.name, "--output-dir",
                     str(outputs), user="reader")  # fmt: skip
    run("job", "download", finished_job.name, "--download-path", str(everything),
        "--all")  # fmt: skip

    job_dir = Path(finished_job.job_dir)
    assert sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*")) == [
        "outputs", "outputs/predictions.csv",
    ]  # fmt: skip
    assert (outputs / "outputs/predictions.csv").read_bytes() == (
        job_dir / "outputs/predictions.csv"
    ).read_bytes()
    assert shown["files"] == 1 and shown["status"] == "completed"
    for relative in ("azureml-logs/70_driver_log.txt", "logs/job_result.txt"):
        assert (everything / relative).read_bytes() == (job_dir / relative).read_bytes()
    assert not (everything / ".state").exists()  # engine state is not the job's


def test_a_download_never_overwrites_nor_follows_links_out(finished_job, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    secret = tmp_path / "secret.txt"
    secret.write_text("server file")
    os.symlink(secret, Path(finished_job.job_dir) / "outputs" / "link.txt")

    with pytest.raises(CommandError, match="already exists and is not empty"):
        run("job", "download", finished_job.name, "--output-dir", str(target))
    shown = run_json("job", "download", finished_job.name, "--output-dir",
                     str(tmp_path / "new"))  # fmt: skip

    assert (target / "keep.txt").read_text() == "mine"
    assert shown["files"] == 1
    assert not (tmp_path / "new" / "outputs" / "link.txt").exists()


def test_stream_of_a_failed_job_prints_the_cause_and_exits_non_zero(
    cast, tmp_path, django_capture_on_commit_callbacks
):
    create_script_endpoint(tmp_path, "bad_init.py")
    with django_capture_on_commit_callbacks(execute=True):
        name = invoke(tmp_path)
    out = StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("job", "stream", name, "--user", "reader", "--workspace",
                     "team", stdout=out)  # fmt: skip

    job = Job.objects.get(name=name)
    assert job.status == JobStatus.FAILED
    assert caught.value.returncode == 1
    assert str(caught.value).startswith(f"job '{name}' failed: ")
    assert "model.pkl not found" in str(caught.value)
    printed = out.getvalue()
    assert f"Job {name}: {FILES} mini-batches" in printed  # the driver log
    assert "--- logs/job_progress_overview.txt" in printed
    assert "Status: failed" in printed
    assert f"Job {name} failed:" in printed


@pytest.mark.slow
@pytest.mark.usefixtures("file_database")
def test_stream_follows_a_running_job_until_it_completes(cast, tmp_path, monkeypatch):
    create_script_endpoint(tmp_path, "slow.py")
    monkeypatch.setattr(Conf, "SYNC", False)  # queued; a thread plays the worker
    name = invoke(tmp_path)
    worker = threading.Thread(target=_deliver, args=(Job.objects.get(name=name).pk,))
    out = StringIO()

    worker.start()
    try:
        call_command("job", "stream", name, "--user", "reader", "--workspace",
                     "team", stdout=out)  # fmt: skip
    finally:
        worker.join(timeout=60)

    printed = out.getvalue()
    job = Job.objects.get(name=name)
    assert job.status == JobStatus.COMPLETED, (job.error, printed)
    bars = re.findall(r"\] (\d+)/(\d+) mini-batches (\d+)%.*\((\w+)\)", printed)
    # Progress was seen while the job ran, then the end, in order.
    assert any(status == "running" for *_, status in bars), printed
    assert bars[-1] == (str(FILES), str(FILES), "100", "completed"), printed
    done = [int(d) for d, *_ in bars]
    assert done == sorted(done)
    assert f"Job {name}: {FILES} mini-batches, {FILES} items" in printed
    assert "Job completed." in printed  # the driver log's last line
    assert printed.rstrip().splitlines()[-1].startswith("Outputs: ")


def _deliver(job_id: int) -> None:
    try:
        run_job_task(job_id)
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.usefixtures("file_database")
def test_the_readme_walk_through_runs_on_a_real_cluster(
    cast, azure_example, tmp_path, monkeypatch
):
    """endpoint.yml + deployment.yml + a model folder -> create, invoke, stream,
    download, each a `manage.py` process, the job run by a real qcluster."""
    monkeypatch.setattr(Conf, "SYNC", False)
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path),
        "STUDIO_DATASTORE": str(settings.STUDIO_DATASTORE),
        "STUDIO_NODE_NAME": settings.STUDIO_NODE_NAME,
        "STUDIO_SYNC_TASKS": "false",
        "STUDIO_CLUSTER_NAME": settings.Q_CLUSTER["name"],
        "BATCH_STUDIO_USER": "contributor",
        "BATCH_STUDIO_WORKSPACE": "team",
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            cwd=azure_example, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    for command in (
        ["batch-endpoint", "create", "--file", "endpoint.yml"],
        ["batch-deployment", "create", "--file", "deployment.yml"],
    ):
        created = manage(*command)
        assert created.returncode == 0, created.stderr
    with qcluster(tmp_path, tmp_path / "qcluster.log"):
        invoked = manage("batch-endpoint", "invoke", "--name", "sample-batch",
                         "--input", "data", "--query", "name", "-o", "tsv")  # fmt: skip
        name = invoked.stdout.strip()
        streamed = manage("job", "stream", name)
    downloaded = manage("job", "download", name, "--output-dir", "results")

    assert invoked.returncode == 0, invoked.stderr
    assert streamed.returncode == 0, (streamed.stdout, streamed.stderr)
    assert "100% (completed)" in streamed.stdout
    assert json.loads(downloaded.stdout)["files"] == 1
    predictions = (azure_example / "results/outputs/predictions.csv").read_text()
    assert len(predictions.splitlines()) == 1 + support.DATA_FILES * support.DATA_ROWS
    failed = manage("job", "show", "no-such-job")
    assert failed.returncode == 1
    assert "CommandError: job 'no-such-job' not found" in failed.stderr
