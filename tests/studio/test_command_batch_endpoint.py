"""`manage.py batch-endpoint create|show|list|delete|invoke` on Azure-shaped files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from django.core.management.base import CommandError

from studio.models import BatchEndpoint, EndpointState, Job, JobStatus
from tests.conftest import write_text_files
from tests.studio import test_command_support as support
from tests.studio.test_command_support import (
    DATA_FILES,
    DATA_ROWS,
    create_script_endpoint,
    run,
    run_json,
    write_yaml,
)
from tests.studio.test_jobs_support import file_database  # noqa: F401 - fixture

azure_example = support.azure_example
mlflow_model_dir = support.mlflow_model_dir


def create_endpoint(folder: Path, *extra: str, **who: str) -> dict:
    return run_json(
        "batch-endpoint", "create", "--file", str(folder / "endpoint.yml"), *extra,
        **who,
    )  # fmt: skip


def test_it_creates_an_endpoint_from_an_azure_yaml_file(cast, azure_example):
    shown = create_endpoint(azure_example)

    endpoint = BatchEndpoint.objects.get(workspace=cast.workspace)
    assert endpoint.name == shown["name"] == "sample-batch"
    assert endpoint.created_by == cast.owner
    assert shown["description"] == endpoint.description != ""
    assert shown["state"] == "ready"
    assert shown["studio_url"] == "/w/team/endpoints/sample-batch/"


def test_the_name_option_and_set_override_the_file(cast, azure_example):
    shown = create_endpoint(
        azure_example, "--name", "other-name", "--set", "description=From the CLI"
    )

    assert (shown["name"], shown["description"]) == ("other-name", "From the CLI")


def test_it_refuses_a_name_in_use(cast, azure_example):
    create_endpoint(azure_example)

    with pytest.raises(CommandError) as caught:
        create_endpoint(azure_example)

    assert "batch endpoint 'sample-batch' already exists; choose another name" in str(
        caught.value
    )
    assert BatchEndpoint.objects.count() == 1


def test_it_refuses_malformed_yaml_with_its_line_and_column(cast, tmp_path):
    path = write_yaml(tmp_path / "endpoint.yml", "name: scorer\ndescription: [oops\n")

    with pytest.raises(CommandError, match=r"endpoint.yml, line 3, column 1: not"):
        run("batch-endpoint", "create", "--file", str(path))

    assert not BatchEndpoint.objects.exists()


def test_it_refuses_a_malformed_value_pyyaml_cannot_build(cast, tmp_path):
    path = write_yaml(
        tmp_path / "endpoint.yml", "name: scorer\ndescription: 2001-13-45\n"
    )

    with pytest.raises(
        CommandError, match=r"endpoint.yml: not valid YAML: a malformed"
    ):
        run("batch-endpoint", "create", "--file", str(path))

    assert not BatchEndpoint.objects.exists()


def test_it_refuses_an_unknown_field_naming_the_allowed_ones(cast, tmp_path):
    path = write_yaml(tmp_path / "endpoint.yml", "name: scorer\ndescrption: typo\n")

    with pytest.raises(CommandError) as caught:
        run("batch-endpoint", "create", "--file", str(path))

    message = str(caught.value)
    assert message.startswith("endpoint.yml, line 2: descrption: unknown field")
    assert "allowed: $schema, name, description" in message
    assert "(did you mean description?)" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: scorer\nname: again\n", "endpoint.yml, line 2: name: given twice"),
        ("name: [a, b]\n", "endpoint.yml, line 1: name: must be text, not ['a', 'b']"),
        ("description: no name\n", "endpoint.yml: name: a batch endpoint needs a name"),
        ("- name: scorer\n", "endpoint.yml: must be a YAML mapping of fields"),
    ],
)
def test_it_refuses_a_bad_file_saying_what_is_wrong(cast, tmp_path, text, expected):
    path = write_yaml(tmp_path / "endpoint.yml", text)

    with pytest.raises(CommandError, match=f"^{expected}".replace("[", r"\[")):
        run("batch-endpoint", "create", "--file", str(path))


def test_a_reader_cannot_create_an_endpoint(cast, azure_example):
    with pytest.raises(CommandError) as caught:
        create_endpoint(azure_example, user="reader")

    assert str(caught.value) == (
        "this needs the contributor role in workspace 'team'; you are reader"
    )
    assert not BatchEndpoint.objects.exists()


def test_an_outsider_learns_nothing_of_the_workspace(cast, azure_example):
    create_endpoint(azure_example)

    with pytest.raises(CommandError, match=r"^workspace 'team' not found$"):
        run("batch-endpoint", "show", "--name", "sample-batch", user="outsider")


def test_it_needs_an_acting_user(cast, monkeypatch):
    monkeypatch.delenv("BATCH_STUDIO_USER", raising=False)

    with pytest.raises(CommandError, match="give --user NAME or set BATCH_STUDIO_USER"):
        run("batch-endpoint", "list", user=None)


def test_the_workspace_and_user_come_from_the_environment(
    cast, azure_example, monkeypatch
):
    create_endpoint(azure_example)
    monkeypatch.setenv("BATCH_STUDIO_WORKSPACE", "team")
    monkeypatch.setenv("BATCH_STUDIO_USER", "reader")

    listed = run("batch-endpoint", "list", "--query", "name", "-o", "tsv",
                 user=None, workspace=None)  # fmt: skip

    assert listed == "sample-batch\n"


def test_it_names_a_missing_endpoint_and_close_names(cast, azure_example):
    create_endpoint(azure_example)

    with pytest.raises(CommandError) as caught:
        run("batch-endpoint", "show", "--name", "sample-bach")

    assert str(caught.value) == (
        "batch endpoint 'sample-bach' not found in workspace 'team'; close names:"
        " sample-batch"
    )


def test_it_shows_and_lists_in_every_output_format(cast, azure_example):
    create_endpoint(azure_example)

    shown = run_json("batch-endpoint", "show", "-n", "sample-batch")
    listed = run_json("batch-endpoint", "list")
    tsv = run("batch-endpoint", "show", "-n", "sample-batch", "-o", "tsv")
    table = run("batch-endpoint", "list", "-o", "table").splitlines()
    query = run("batch-endpoint", "show", "-n", "sample-batch", "--query", "state")

    assert listed == [shown]
    assert tsv.split("\t")[:3] == ["sample-batch", shown["description"], "ready"]
    assert table[0].split() == ["name", "state", "default_deployment", "description"]
    assert table[2].split()[:2] == ["sample-batch", "ready"]
    assert query == '"ready"\n'


def test_it_refuses_a_query_for_a_field_that_is_not_there(cast, azure_example):
    create_endpoint(azure_example)

    with pytest.raises(CommandError, match="--query nope: no field 'nope'; fields:"):
        run("batch-endpoint", "show", "-n", "sample-batch", "--query", "nope")


def test_it_deletes_only_when_told_yes(
    cast, azure_example, django_capture_on_commit_callbacks, monkeypatch
):
    create_endpoint(azure_example)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: no prompt

    with pytest.raises(CommandError, match="add --yes to delete without asking"):
        run("batch-endpoint", "delete", "-n", "sample-batch")
    with django_capture_on_commit_callbacks(execute=True):
        shown = run_json("batch-endpoint", "delete", "-n", "sample-batch", "--yes")

    assert shown["state"] == EndpointState.DELETING
    assert not BatchEndpoint.objects.exists()  # tasks run inline in tests


def create_mlflow_endpoint(folder: Path) -> None:
    create_endpoint(folder)
    run("batch-deployment", "create", "--file", str(folder / "deployment.yml"))


@pytest.mark.slow
def test_it_invokes_on_local_csv_files_and_the_job_completes(
    cast, azure_example, settings, django_capture_on_commit_callbacks
):
    create_mlflow_endpoint(azure_example)

    with django_capture_on_commit_callbacks(execute=True):
        shown = run_json(
            "batch-endpoint", "invoke", "--name", "sample-batch",
            "--input", str(azure_example / "data"), "--job-name", "first-job",
            "--tags", "source=cli", user="contributor",
        )  # fmt: skip

    job = Job.objects.get(name="first-job")
    assert shown["name"] == "first-job"
    assert shown["status"] == JobStatus.QUEUED  # printed when it was queued
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.created_by == cast.contributor
    assert job.tags == {"source": "cli"}
    assert job.mini_batches_total == DATA_FILES // 2  # mini_batch_size 2 in the file
    # The local files were copied into the datastore, as an upload would be.
    assert Path(job.input_path).is_relative_to(settings.STUDIO_DATASTORE)
    predictions = pd.read_csv(Path(job.job_dir) / "outputs" / "predictions.csv")
    assert len(predictions) == DATA_FILES * DATA_ROWS
    assert sorted(set(predictions["file_name"])) == sorted(
        p.name for p in (azure_example / "data").iterdir()
    )


def test_it_invokes_on_a_registered_data_asset_with_overrides(
    cast, azure_example, settings, django_capture_on_commit_callbacks
):
    create_mlflow_endpoint(azure_example)
    run("data", "create", "--file", str(azure_example / "data.yml"))

    with django_capture_on_commit_callbacks(execute=False):
        shown = run_json(
            "batch-endpoint", "invoke", "-n", "sample-batch",
            "--input", "azureml:sample-features@latest",
            "--set", "mini_batch_size=1", "--instance-count", "2",
            "--output-path", "results/run-1",
        )  # fmt: skip

    assert shown["input"] == {"data_asset": "sample-features:1"}
    assert shown["settings"]["mini_batch_size"] == "1"
    assert shown["settings"]["instance_count"] == 2
    assert shown["overrides"] == {"mini_batch_size": "1", "instance_count": "2"}
    assert shown["output_path"] == str(settings.STUDIO_DATASTORE / "team/results/run-1")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--input", "no/such/folder"],
            "--input no/such/folder: no such local file or folder; unsupported input:"
            " give one of: a registered data asset",
        ),
        (
            ["--input", "azureml:missing:1"],
            "--input: data asset 'missing:1' not found",
        ),
        (
            ["--input", "azureml://datastores/workspaceblobstore/paths/x"],
            "--input: unsupported input 'azureml://datastores/",
        ),
        (
            ["--input", "DATA", "--set", "mini_batch_size=none"],
            "mini_batch_size: must be a whole number >= 1",
        ),
        (
            ["--input", "DATA", "--set", "environment_variables={}"],
            "environment_variables: cannot be overridden for one job",
        ),
        (
            ["--input", "DATA", "--deployment-name", "green"],
            "--deployment-name: batch deployment 'green' not found on endpoint",
        ),
        (
            ["--input", "DATA", "--input-type", "uri_file"],
            "--input-type uri_file: DATA is a folder; use uri_folder",
        ),
    ],
)
def test_it_refuses_an_invocation_saying_why(
    cast, azure_example, arguments, expected, monkeypatch
):
    create_mlflow_endpoint(azure_example)
    monkeypatch.chdir(azure_example.parent)
    arguments = [a.replace("DATA", "example/data") for a in arguments]

    with pytest.raises(CommandError) as caught:
        run("batch-endpoint", "invoke", "-n", "sample-batch", *arguments)

    assert str(caught.value).startswith(expected.replace("DATA", "example/data"))
    assert not Job.objects.exists()


def test_a_reader_cannot_invoke(cast, tmp_path):
    create_script_endpoint(tmp_path)

    with pytest.raises(CommandError, match="needs the contributor role"):
        run("batch-endpoint", "invoke", "-n", "texts", "-i", str(tmp_path),
            user="reader")  # fmt: skip

    assert not Job.objects.exists()


@pytest.mark.usefixtures("file_database")
def test_invoke_with_stream_prints_the_job_then_follows_it(cast, tmp_path):
    # Committed at once (no test transaction), so the inline worker runs the
    # job before streaming starts, as with STUDIO_SYNC_TASKS=true.
    create_script_endpoint(tmp_path, "ok.py")
    write_text_files(tmp_path / "inputs", 3)

    printed = run(
        "batch-endpoint", "invoke", "-n", "texts", "--input", str(tmp_path / "inputs"),
        "--job-name", "streamed", "--stream",
    )  # fmt: skip

    head, _, streamed = printed.partition("Streaming job streamed")
    assert json.loads(head)["name"] == "streamed"
    assert "[##############################] 3/3 mini-batches 100% (completed)" in (
        streamed
    )
    assert "Job streamed completed: 3 of 3 mini-batches succeeded" in streamed
