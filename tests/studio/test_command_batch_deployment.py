"""`manage.py batch-deployment create|update|show|list` on Azure ML CLI v2 files."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management.base import CommandError

from studio.models import BatchDeployment, Environment, ModelAsset
from tests.studio import test_command_support as support
from tests.studio.test_command_support import (
    create_script_endpoint,
    run,
    run_json,
    script_example,
    write_yaml,
)

azure_example = support.azure_example
mlflow_model_dir = support.mlflow_model_dir


def create(path: Path, *extra: str, **who: str) -> dict:
    return run_json("batch-deployment", "create", "--file", str(path), *extra, **who)


@pytest.fixture
def endpoint(cast, azure_example) -> Path:
    """The example's endpoint, created; returns the example's folder."""
    run("batch-endpoint", "create", "--file", str(azure_example / "endpoint.yml"))
    return azure_example


def test_it_registers_an_inline_model_named_after_the_deployment(
    cast, endpoint, settings
):
    shown = create(endpoint / "deployment.yml")

    deployment = BatchDeployment.objects.get()
    model = deployment.model
    assert (model.name, model.version) == ("classifier-mlflow", 1)
    assert model.type == ModelAsset.Type.MLFLOW
    # Copied into the datastore, as an upload is; the example folder is not used.
    assert Path(model.path).is_relative_to(settings.STUDIO_DATASTORE)
    assert (Path(model.path) / "MLmodel").is_file()
    assert shown["model"] == "azureml:classifier-mlflow:1"
    assert shown["is_default"] is True
    assert shown["compute"] == "batch-cluster"  # azureml: dropped
    assert shown["environment"] is None and shown["code_configuration"] is None
    # Settings from the `settings:` block, instance_count from `resources:`.
    assert deployment.settings["mini_batch_size"] == "2"
    assert deployment.settings["max_concurrency_per_instance"] == 2
    assert deployment.settings["timeout"] == 300
    assert deployment.settings["instance_count"] == 1
    assert shown["studio_url"] == (
        "/w/team/endpoints/sample-batch/deployments/classifier-mlflow/1/"
    )


def test_it_resolves_registered_references_in_the_older_shape(cast, endpoint):
    run("model", "create", "--file", str(endpoint / "model.yml"))
    run("model", "create", "--file", str(endpoint / "model.yml"))  # version 2
    run("environment", "create", "--name", "worker-python")
    path = endpoint / "deployment-registered.yml"
    path.write_text(path.read_text() + "environment: azureml:worker-python:1\n")

    shown = create(path)

    assert shown["model"] == "azureml:sample-classifier:2"  # @latest
    assert shown["environment"] == "azureml:worker-python:1"
    assert shown["is_default"] is True  # the endpoint's first deployment
    assert shown["settings"]["mini_batch_size"] == "3"
    assert shown["settings"]["max_retries"] == 2
    assert shown["settings"]["output_file_name"] == "scores.csv"
    assert ModelAsset.objects.count() == 2  # nothing registered for a reference


def test_it_copies_code_and_registers_an_inline_environment(cast, tmp_path):
    create_script_endpoint(tmp_path, "ok.py", retry_settings={"max_retries": 1})

    deployment = BatchDeployment.objects.get()
    assert deployment.model.type == ModelAsset.Type.CUSTOM
    code = Path(deployment.code_path)
    assert (code / "ok.py").read_text() == (tmp_path / "code" / "ok.py").read_text()
    assert code != tmp_path / "code"
    assert deployment.scoring_script == "ok.py"
    env = deployment.environment
    assert (env.name, env.version, env.python_requirements) == ("blue-env", 1, [])
    assert deployment.settings["max_retries"] == 1


def test_an_update_from_the_file_makes_a_revision_and_reuses_the_environment(
    cast, tmp_path
):
    path = create_script_endpoint(tmp_path)

    shown = run_json(
        "batch-deployment", "update", "--file", str(path),
        "--set", "mini_batch_size=4", "--set", "retry_settings.timeout=12",
    )  # fmt: skip

    assert shown["revision"] == 2
    assert shown["settings"]["mini_batch_size"] == "4"
    assert shown["settings"]["timeout"] == 12
    assert shown["environment"] == "azureml:blue-env:1"
    assert Environment.objects.count() == 1


def test_an_update_without_a_file_keeps_everything_but_what_is_set(cast, tmp_path):
    create_script_endpoint(tmp_path, "ok.py")
    first = BatchDeployment.objects.get()

    shown = run_json(
        "batch-deployment", "update", "-n", "blue", "-e", "texts",
        "--set", "settings.mini_batch_size=7", "--set", "timeout=9",
        "--set", "environment_variables.GREETING=hi",
    )  # fmt: skip

    second = BatchDeployment.objects.get(revision=2)
    assert shown["revision"] == 2
    assert second.settings["mini_batch_size"] == "7"
    assert second.settings["timeout"] == 9
    assert second.settings["environment_variables"] == {"GREETING": "hi"}
    assert (second.model, second.environment) == (first.model, first.environment)
    assert second.code_path == first.code_path  # code kept
    assert second.scoring_script == "ok.py"


def test_an_update_refuses_an_unknown_field(cast, tmp_path):
    create_script_endpoint(tmp_path)

    with pytest.raises(CommandError, match="--set mini_bach_size: not something an"):
        run("batch-deployment", "update", "-n", "blue", "-e", "texts",
            "--set", "mini_bach_size=3")  # fmt: skip


def test_set_and_name_override_the_file(cast, endpoint):
    shown = create(
        endpoint / "deployment.yml",
        "--name", "green", "--set", "mini_batch_size=5", "--set", "logging_level=debug",
    )  # fmt: skip

    assert shown["name"] == "green"
    assert shown["model"] == "azureml:green:1"
    assert shown["settings"]["mini_batch_size"] == "5"
    assert shown["settings"]["logging_level"] == "debug"


def test_it_refuses_a_missing_referenced_model_naming_close_ones(cast, endpoint):
    run("model", "create", "--file", str(endpoint / "model.yml"))
    path = endpoint / "deployment-registered.yml"
    path.write_text(
        path.read_text().replace("sample-classifier@latest", "sample-clasifier:3")
    )

    with pytest.raises(CommandError) as caught:
        create(path)

    assert str(caught.value) == (
        "deployment-registered.yml, line 5: model: model 'sample-clasifier:3' not"
        " found;"
        " close names: sample-classifier"
    )
    assert not BatchDeployment.objects.exists()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "mini_batch_size: 2",
            "mini_bach_size: 2",
            "deployment.yml, line 13: settings.mini_bach_size: unknown field allowed:"
            " mini_batch_size,",
        ),
        (
            "mini_batch_size: 2",
            "mini_batch_size: lots",
            "deployment.yml, line 13: mini_batch_size: must be a whole number >= 1",
        ),
        (
            "instance_count: 1",
            "instance_count: [1]",
            "deployment.yml, line 10: instance_count: must be a whole number >= 1,"
            " not [1]",
        ),
        (
            "output_action: append_row",
            "output_action: append_rows",
            "deployment.yml, line 14: output_action: must be one of append_row,"
            " summary_only, not 'append_rows'",
        ),
        ("path: ./model", "path: ./nowhere", "deployment.yml, line 7: model.path: "),
        (
            "type: model",
            "type: model\nwhat: ever",
            "deployment.yml, line 6: what: unknown field allowed: $schema, name,",
        ),
        (
            "name: classifier-mlflow",
            "name: 9lives",
            "deployment.yml, line 3: name: '9lives' is not a valid deployment name",
        ),
    ],
)
def test_it_refuses_a_bad_field_naming_it(cast, endpoint, old, new, expected):
    path = endpoint / "deployment.yml"
    path.write_text(path.read_text().replace(old, new))

    with pytest.raises(CommandError) as caught:
        create(path)

    assert str(caught.value).startswith(expected)
    assert not ModelAsset.objects.exists()  # nothing half-created
    assert not BatchDeployment.objects.exists()


def test_it_refuses_malformed_yaml_with_its_line_and_column(cast, endpoint):
    path = write_yaml(endpoint / "broken.yml", "name: x\nsettings: {a: 1\n")

    with pytest.raises(CommandError, match=r"^broken.yml, line 3, column 1: not valid"):
        create(path)


def test_it_refuses_a_custom_model_without_code(cast, tmp_path):
    run(
        "batch-endpoint",
        "create",
        "-f",
        str(write_yaml(tmp_path / "e.yml", "name: texts\n")),
    )
    path = script_example(tmp_path)
    path.write_text(path.read_text().split("code_configuration:")[0])

    with pytest.raises(CommandError) as caught:
        create(path)

    assert "no-code deployment is for MLflow models only" in str(caught.value)
    assert str(caught.value).startswith(
        "deployment.yml: code_configuration and environment:"
    )
    assert not ModelAsset.objects.exists()


def test_it_refuses_to_create_a_deployment_twice(cast, endpoint):
    create(endpoint / "deployment.yml")

    with pytest.raises(CommandError) as caught:
        create(endpoint / "deployment.yml")

    assert str(caught.value) == (
        "batch deployment 'classifier-mlflow' already exists on endpoint"
        " 'sample-batch' (revision 1); `batch-deployment update` saves a new revision"
    )
    assert ModelAsset.objects.count() == 1


def test_it_refuses_an_endpoint_that_does_not_exist(cast, endpoint):
    with pytest.raises(CommandError, match="batch endpoint 'nope' not found"):
        create(endpoint / "deployment.yml", "--endpoint-name", "nope")


def test_a_reader_cannot_create_a_deployment(cast, endpoint):
    with pytest.raises(CommandError, match="needs the contributor role"):
        create(endpoint / "deployment.yml", user="reader")

    assert not ModelAsset.objects.exists()


def test_it_shows_and_lists_deployments(cast, endpoint):
    create(endpoint / "deployment.yml")
    run("batch-deployment", "update", "-n", "classifier-mlflow", "-e", "sample-batch",
        "--set", "mini_batch_size=1")  # fmt: skip

    current = run_json("batch-deployment", "show", "-n", "classifier-mlflow",
                       "-e", "sample-batch")  # fmt: skip
    first = run_json("batch-deployment", "show", "-n", "classifier-mlflow",
                     "-e", "sample-batch", "--revision", "1")  # fmt: skip
    listed = run("batch-deployment", "list", "-e", "sample-batch", "--query",
                 "revision", "-o", "tsv")  # fmt: skip
    every = run_json("batch-deployment", "list", "-e", "sample-batch",
                     "--all-revisions", "--query", "revision")  # fmt: skip

    assert (current["revision"], first["revision"]) == (2, 1)
    assert listed == "2\n"
    assert every == [2, 1]
    with pytest.raises(CommandError, match="'classifier-mlflow' revision 9 not found"):
        run("batch-deployment", "show", "-n", "classifier-mlflow", "-e",
            "sample-batch", "--revision", "9")  # fmt: skip
