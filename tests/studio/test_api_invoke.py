"""REST API: invoking an endpoint runs a real job; refusals carry DESIGN's messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from studio.models import BatchEndpoint, EndpointState, Job, JobStatus

from .test_api_support import api, api_url
from .test_endpoints_deployments import make_data, make_endpoint, make_script_deployment

INVOKE = api_url("endpoint-invoke", "team", "scorer")
ACCEPTED = (
    "give one of: a registered data asset (name:version or name@latest), an"
    " http(s) URL, or local files uploaded with the request"
)


@pytest.fixture
def endpoint(cast):
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)
    return endpoint


def test_it_runs_a_job_on_a_data_asset_and_answers_202_at_once(
    cast, endpoint, django_capture_on_commit_callbacks
):
    make_data(cast.workspace, count=3)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(cast, "contributor").post(
            INVOKE,
            {"data_asset": "inputs@latest", "job_name": "api-run",
             "overrides": {"mini_batch_size": 2}, "tags": {"run": "nightly"}},
            format="json",
        )  # fmt: skip

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["name"], body["status"], body["endpoint"]) == (
        "api-run",
        "queued",
        "scorer",
    )
    assert response["Location"] == body["url"]
    assert body["progress"].endswith(api_url("job-progress", "team", "api-run"))
    assert body["page"].endswith("/w/team/jobs/api-run/")
    assert body["tags"] == {"run": "nightly"}

    for callback in callbacks:
        callback()
    job = Job.objects.get(name="api-run")
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.items_succeeded, job.mini_batches_total) == (3, 2)
    assert job.created_by == cast.contributor
    reader = api(cast, "reader")
    progress = reader.get(body["progress"]).json()
    assert progress["status"] == "completed" and progress["percent"] == 100
    files = reader.get(api_url("job-files", "team", "api-run")).json()["entries"]
    assert "outputs/predictions.csv" in [entry["path"] for entry in files]
    result = reader.get(
        api_url("job-log", "team", "api-run"), {"path": "logs/job_result.txt"}
    ).json()
    assert "completed" in result["text"].lower()


def test_it_scores_files_uploaded_with_the_request(
    cast, endpoint, django_capture_on_commit_callbacks
):
    files = [SimpleUploadedFile(f"part_{n}.txt", b"x\n") for n in range(2)]

    with django_capture_on_commit_callbacks(execute=True):
        response = api(cast, "owner").post(
            INVOKE,
            {"input_files": files, "job_name": "uploads", "output_path": "out/one"},
            format="multipart",
        )

    assert response.status_code == 202, response.content
    job = Job.objects.get(name="uploads")
    assert job.status == JobStatus.COMPLETED, job.error
    job_dir = Path(settings.STUDIO_DATASTORE) / "team" / "out" / "one"
    lines = (job_dir / "outputs" / "predictions.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["part_0.txt", "part_1.txt"]


@pytest.mark.parametrize(
    ("who", "expected"),
    [("owner", 202), ("contributor", 202), ("reader", 403), ("outsider", 404),
     ("anonymous", 401)],
)  # fmt: skip
def test_only_contributors_invoke(cast, endpoint, who, expected):
    response = api(cast, who).post(
        INVOKE, {"url": "https://example.org/a.csv"}, format="json"
    )

    assert response.status_code == expected
    assert Job.objects.count() == (1 if expected == 202 else 0)


def test_a_reader_learns_the_role_needed(cast, endpoint):
    response = api(cast, "reader").post(INVOKE, {}, format="json")

    assert response.json() == {
        "detail": "this needs the contributor role in workspace 'team'; you are reader"
    }


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({}, "input", f"no input given: {ACCEPTED}"),
        (
            {"data_asset": "inputs:1", "url": "https://example.org/a"},
            "input",
            f"more than one input given: {ACCEPTED}",
        ),
        (
            {"url": "ftp://example.org/a"},
            "url",
            f"unsupported input 'ftp://example.org/a': {ACCEPTED}",
        ),
        ({"data_asset": "inptus:1"}, "data_asset", "data asset 'inptus:1' not found"),
        (
            {"url": "https://example.org/a", "overrides": {"colour": "red"}},
            "non_field_errors",
            "colour: cannot be overridden for one job",
        ),
        (
            {"url": "https://example.org/a", "deployment_name": "green"},
            "deployment_name",
            "batch deployment 'green' not found on endpoint 'scorer'",
        ),
        (
            {"data_asset": "inputs:1", "output_path": "x" * 300},
            "output_path",
            "each folder name in output_path must be at most 255 bytes",
        ),
        (
            {"data_asset": "inputs:1", "overrides": {"timeout": "inf"}},
            "timeout",
            "timeout: must be a number of seconds >= 0, not 'inf'",
        ),
    ],
)
def test_it_refuses_bad_invocations_with_400_and_nothing_started(
    cast, endpoint, payload, field, message
):
    make_data(cast.workspace)

    response = api(cast, "owner").post(INVOKE, payload, format="json")

    assert response.status_code == 400, response.content
    assert response.json()[field][0].startswith(message)
    assert not Job.objects.exists()


def test_it_refuses_an_output_location_that_exists_with_409(cast, endpoint):
    (Path(settings.STUDIO_DATASTORE) / "team" / "out").mkdir(parents=True)

    response = api(cast, "owner").post(
        INVOKE,
        {"url": "https://example.org/a", "output_path": "out"},
        format="json",
    )

    assert response.status_code == 409
    assert response.json() == {
        "output_path": [
            "output location out already exists; nothing was overwritten. A new"
            " output path is needed for every invocation"
        ]
    }


def test_it_refuses_a_job_name_in_use_with_409(cast, endpoint):
    client = api(cast, "owner")
    body = {"url": "https://example.org/a", "job_name": "nightly"}
    client.post(INVOKE, body, format="json")

    response = client.post(INVOKE, body, format="json")

    assert response.status_code == 409
    assert response.json()["job_name"] == [
        "a job named 'nightly' already exists; choose another name"
    ]


def test_it_refuses_an_endpoint_being_deleted_with_409(cast, endpoint):
    BatchEndpoint.objects.update(state=EndpointState.DELETING)

    response = api(cast, "owner").post(
        INVOKE, {"url": "https://example.org/a"}, format="json"
    )

    assert response.status_code == 409
    assert "being deleted" in response.json()["non_field_errors"][0]


def test_invoking_a_missing_endpoint_names_it(cast, endpoint):
    response = api(cast, "owner").post(
        api_url("endpoint-invoke", "team", "scorr"), {}, format="json"
    )

    assert response.status_code == 404
    assert response.json()["detail"] == (
        "batch endpoint 'scorr' not found in workspace 'team'; close names: scorer"
    )
