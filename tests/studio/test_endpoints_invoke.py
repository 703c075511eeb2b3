"""Invoking an endpoint from the browser: real jobs on the engine, clear refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from studio.models import DataAsset, Job, JobStatus

from .test_endpoints_deployments import (
    make_data,
    make_endpoint,
    make_mlflow_model,
    make_script_deployment,
    server_path,
)

INVOKE = reverse("studio:endpoint-invoke", args=["team", "scorer"])
ACCEPTED = (
    "give one of: a registered data asset (name:version or name@latest), an"
    " http(s) URL, or local files uploaded with the request"
)


@pytest.fixture(scope="module")
def mlflow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from studio.samples import save_sklearn_model

    return save_sklearn_model(
        tmp_path_factory.mktemp("mlflow") / "model", n_estimators=3
    )


@pytest.fixture
def endpoint(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)
    return endpoint


def datastore_files() -> list[Path]:
    return sorted(Path(settings.STUDIO_DATASTORE).rglob("*"))


def job_detail(job_name: str) -> str:
    return reverse("studio:job-detail", args=["team", job_name])


def test_it_runs_an_mlflow_model_on_a_data_asset_and_writes_predictions(
    cast, mlflow_model_dir, django_capture_on_commit_callbacks
):
    import mlflow.pyfunc
    import pandas as pd

    from studio.samples import write_feature_csvs
    from studio.services.endpoints import create_deployment

    endpoint = make_endpoint(cast.workspace, cast.owner)
    model = make_mlflow_model(cast.workspace, mlflow_model_dir)
    create_deployment(
        endpoint,
        cast.owner,
        name="forest",
        model=str(model),
        settings={"resource_monitor_interval": 0, "mini_batch_size": 2},
    )
    csvs = write_feature_csvs(server_path("features"), n_files=3, rows=4)
    DataAsset.objects.create(
        workspace=cast.workspace,
        name="features",
        version=1,
        type=DataAsset.Type.FOLDER,
        path=str(server_path("features")),
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = cast.client("contributor").post(
            INVOKE, {"data_asset": "features@latest", "job_name": "forest-run"}
        )

    job = Job.objects.get(name="forest-run")
    assert response.status_code == 302 and response["Location"] == job_detail(
        "forest-run"
    )
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.deployment_label == "forest r1" and job.created_by == cast.contributor
    assert (job.items_succeeded, job.mini_batches_total) == (3, 2)
    with open(Path(job.job_dir) / "outputs" / "predictions.csv") as handle:
        rows = list(csv.reader(handle))
    frames = [pd.read_csv(path) for path in csvs]
    expected = mlflow.pyfunc.load_model(str(mlflow_model_dir)).predict(
        pd.concat(frames).astype(float)
    )
    assert rows.pop(0) == ["row", "prediction", "file_name"]
    assert [row[2] for row in rows] == [p.name for p in csvs for _ in range(4)]
    assert [row[0] for row in rows] == [str(i) for _ in csvs for i in range(4)]
    assert [int(float(row[1])) for row in rows] == [int(p) for p in expected]


def test_it_scores_uploaded_files_into_a_chosen_output_path(
    cast, endpoint, django_capture_on_commit_callbacks
):
    files = [
        SimpleUploadedFile(f"part_{n}.txt", f"item {n}\n".encode()) for n in range(3)
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = cast.client("contributor").post(
            INVOKE,
            {
                "input_files": files,
                "job_name": "uploaded-run",
                "output_path": "results/run-1",
            },
        )

    job = Job.objects.get(name="uploaded-run")
    job_dir = Path(settings.STUDIO_DATASTORE) / "team" / "results" / "run-1"
    assert response["Location"] == job_detail("uploaded-run")
    assert job.status == JobStatus.COMPLETED, job.error
    assert Path(job.job_dir) == job_dir
    lines = (job_dir / "outputs" / "predictions.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "part_0.txt",
        "part_1.txt",
        "part_2.txt",
    ]
    assert job.input == {"uploads": 3}


def test_it_queues_the_job_for_the_cluster_with_overrides_and_tags(
    cast, endpoint, django_capture_on_commit_callbacks
):
    make_data(cast.workspace)

    with django_capture_on_commit_callbacks() as callbacks:
        response = cast.client("contributor").post(
            INVOKE,
            {
                "data_asset": "inputs:1",
                "mini_batch_size": "1",
                "instance_count": "2",
                "max_concurrency_per_instance": "2",
                "error_threshold": "5",
                "logging_level": "debug",
                "output_file_name": "scores.csv",
                "max_retries": "0",
                "timeout": "5",
                "tags": "team=risk\nrun = nightly",
            },
        )

    job = Job.objects.get()
    assert response["Location"] == job_detail(job.name)
    assert job.status == JobStatus.QUEUED and len(callbacks) == 1
    assert job.name.startswith("scorer-")
    assert job.input == {"data_asset": "inputs:1"} and job.input_type == "uri_folder"
    assert job.tags == {"team": "risk", "run": "nightly"}
    assert job.overrides["mini_batch_size"] == "1"
    assert job.settings["mini_batch_size"] == "1"
    assert job.settings["instance_count"] == 2
    assert job.settings["max_concurrency_per_instance"] == 2
    assert job.settings["error_threshold"] == 5
    assert job.settings["logging_level"] == "debug"
    assert job.settings["output_file_name"] == "scores.csv"
    assert (job.settings["max_retries"], job.settings["timeout"]) == (0, 5.0)
    assert job.settings["resource_monitor_interval"] == 0


def test_it_runs_on_the_chosen_deployment_instead_of_the_default(cast, endpoint):
    make_script_deployment(endpoint, cast.owner, name="green")
    make_data(cast.workspace)

    cast.client("contributor").post(
        INVOKE, {"data_asset": "inputs@latest", "deployment_name": "green"}
    )

    assert Job.objects.get().deployment_label == "green r1"


def test_it_queues_a_url_input_for_the_task_to_download(cast, endpoint):
    cast.client("contributor").post(
        INVOKE, {"url": "https://example.org/data/file.csv"}
    )

    job = Job.objects.get()
    assert job.input == {"url": "https://example.org/data/file.csv"}
    assert job.input_path == ""


def test_a_job_whose_script_lacks_run_fails_early_with_the_cause(
    cast, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner, script="no_run.py")
    make_data(cast.workspace)

    with django_capture_on_commit_callbacks(execute=True):
        cast.client("contributor").post(INVOKE, {"data_asset": "inputs:1"})

    job = Job.objects.get()
    assert job.status == JobStatus.FAILED
    assert "run" in job.error and job.error_log.startswith("logs/")


def assert_refused(response, field: str | None, message: str, before) -> None:
    form = response.context["form"]
    errors = form.non_field_errors() if field is None else form.errors[field]
    assert response.status_code == 200
    assert message in errors[0], errors
    assert not Job.objects.exists()
    assert datastore_files() == before


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, None, f"no input given: {ACCEPTED}"),
        (
            {"data_asset": "inputs:1", "url": "https://example.org/x.csv"},
            None,
            f"more than one input given: {ACCEPTED}",
        ),
        (
            {"url": "s3://bucket/data"},
            "url",
            f"unsupported input 's3://bucket/data': {ACCEPTED}",
        ),
        ({"url": "/srv/data"}, "url", f"unsupported input '/srv/data': {ACCEPTED}"),
        (
            {"data_asset": "azureml://datastores/blob/paths/x"},
            "data_asset",
            f"unsupported input 'azureml://datastores/blob/paths/x': {ACCEPTED}",
        ),
    ],
)
def test_it_refuses_an_unsupported_input_listing_the_accepted_forms(
    cast, endpoint, data, field, message
):
    make_data(cast.workspace)
    before = datastore_files()

    response = cast.client("contributor").post(INVOKE, data)

    assert_refused(response, field, message, before)


def test_it_refuses_a_data_asset_that_does_not_exist_naming_close_ones(cast, endpoint):
    make_data(cast.workspace, "inputs")
    before = datastore_files()

    response = cast.client("contributor").post(INVOKE, {"data_asset": "inputz:1"})

    assert_refused(
        response,
        "data_asset",
        "data asset 'inputz:1' not found; close names: inputs",
        before,
    )


def test_it_refuses_an_output_location_that_already_exists(cast, endpoint):
    make_data(cast.workspace)
    client = cast.client("contributor")
    client.post(INVOKE, {"data_asset": "inputs:1", "output_path": "results/a"})
    marker = Path(settings.STUDIO_DATASTORE) / "team" / "results" / "a" / "keep.txt"
    marker.write_text("earlier output")
    before = datastore_files()

    response = client.post(
        INVOKE,
        {
            "input_files": [SimpleUploadedFile("x.txt", b"1")],
            "output_path": "results/a",
        },
    )

    form = response.context["form"]
    assert form.errors["output_path"] == [
        "output location results/a already exists; nothing was overwritten. A new"
        " output path is needed for every invocation"
    ]
    assert Job.objects.count() == 1 and datastore_files() == before
    assert marker.read_text() == "earlier output"


@pytest.mark.parametrize("output_path", ["/abs/path", "../escape", "models/x"])
def test_it_refuses_an_output_path_outside_the_workspaces_own_area(
    cast, endpoint, output_path
):
    make_data(cast.workspace)
    before = datastore_files()

    response = cast.client("contributor").post(
        INVOKE, {"data_asset": "inputs:1", "output_path": output_path}
    )

    assert_refused(response, "output_path", repr(output_path), before)


def test_it_refuses_a_job_name_already_used(cast, endpoint):
    make_data(cast.workspace)
    client = cast.client("contributor")
    client.post(INVOKE, {"data_asset": "inputs:1", "job_name": "nightly"})

    response = client.post(INVOKE, {"data_asset": "inputs:1", "job_name": "nightly"})

    assert response.context["form"].errors["job_name"] == [
        "a job named 'nightly' already exists; choose another name"
    ]
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mini_batch_size", "zero", "mini_batch_size: must be a whole number >= 1"),
        ("instance_count", "0", "instance_count: must be a whole number >= 1"),
        ("max_concurrency_per_instance", "-1", "max_concurrency_per_instance: must"),
        ("error_threshold", "-3", "error_threshold: must be a whole number >= -1"),
        ("logging_level", "chatty", "logging_level: must be one of debug, info,"),
        ("output_file_name", "../x.csv", "output_file_name: must be a plain file"),
        ("max_retries", "many", "max_retries: must be a whole number >= 0"),
        ("timeout", "-1", "timeout: must be a number of seconds >= 0"),
    ],
)
def test_it_refuses_a_bad_override_naming_the_field(
    cast, endpoint, field, value, message
):
    make_data(cast.workspace)
    before = datastore_files()

    response = cast.client("contributor").post(
        INVOKE, {"data_asset": "inputs:1", field: value}
    )

    assert_refused(response, field, message, before)


def test_it_refuses_tags_that_are_not_key_value_lines(cast, endpoint):
    make_data(cast.workspace)

    response = cast.client("contributor").post(
        INVOKE, {"data_asset": "inputs:1", "tags": "team=risk\nnightly"}
    )

    assert response.context["form"].errors["tags"] == [
        "tags: line 2 ('nightly') is not KEY=VALUE"
    ]
    assert not Job.objects.exists()


def test_it_refuses_an_endpoint_without_deployments(cast):
    make_endpoint(cast.workspace, cast.owner)
    make_data(cast.workspace)
    before = datastore_files()

    response = cast.client("contributor").post(INVOKE, {"data_asset": "inputs:1"})

    assert_refused(
        response,
        "deployment_name",
        "batch endpoint 'scorer' has no deployment yet; create one first",
        before,
    )


def test_the_form_offers_the_workspaces_data_assets_and_deployments(cast, endpoint):
    make_data(cast.workspace, "inputs")
    make_script_deployment(endpoint, cast.owner, name="green")

    body = cast.client("contributor").get(INVOKE).content.decode()

    assert '<option value="inputs@latest">' in body
    assert '<option value="inputs:1">' in body
    assert '<option value="green">' in body
    assert "Default (blue)" in body
