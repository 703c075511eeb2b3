"""Deployment revisions in the browser: create, update, default, detail page."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from scoring_engine import Settings
from studio.forms.endpoints import setting_initial
from studio.models import (
    BatchDeployment,
    BatchEndpoint,
    DataAsset,
    Environment,
    Job,
    ModelAsset,
    Workspace,
)
from studio.services.endpoints import create_deployment, create_endpoint

SCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "scripts"


# Builders shared by the test_endpoints_* modules.


def server_path(*parts: str) -> Path:
    """A path under the allowed root the studio fixture configures."""
    return Path(settings.STUDIO_ALLOWED_ROOTS[0]).joinpath(*parts)


def make_code(name: str = "code") -> Path:
    """A copy of the fixture scoring scripts under the allowed root."""
    target = server_path(name)
    shutil.copytree(SCRIPTS, target)
    return target


def make_custom_model(workspace: Workspace, name: str = "scorer-model") -> ModelAsset:
    folder = server_path("models", name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.txt").write_text("1.0\n")
    return ModelAsset.objects.create(
        workspace=workspace,
        name=name,
        version=ModelAsset.objects.next_version(workspace, name),
        type=ModelAsset.Type.CUSTOM,
        path=str(folder),
    )


def make_mlflow_model(workspace: Workspace, model_dir: Path) -> ModelAsset:
    return ModelAsset.objects.create(
        workspace=workspace,
        name="classifier",
        version=ModelAsset.objects.next_version(workspace, "classifier"),
        type=ModelAsset.Type.MLFLOW,
        path=str(model_dir),
    )


def make_worker_env(workspace: Workspace) -> Environment:
    """An environment without requirements: the worker's own interpreter."""
    found = Environment.objects.filter(workspace=workspace, name="worker").first()
    return found or Environment.objects.create(
        workspace=workspace, name="worker", version=1, python_requirements=[]
    )


def make_data(workspace: Workspace, name: str = "inputs", count: int = 3) -> DataAsset:
    folder = server_path("data", name)
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"file_{number:03d}.txt").write_text(f"item {number}\n")
    return DataAsset.objects.create(
        workspace=workspace,
        name=name,
        version=DataAsset.objects.next_version(workspace, name),
        type=DataAsset.Type.FOLDER,
        path=str(folder),
    )


def make_endpoint(
    workspace: Workspace, user: Any, name: str = "scorer"
) -> BatchEndpoint:
    return create_endpoint(workspace, user, name=name)


def make_script_deployment(
    endpoint: BatchEndpoint,
    user: Any,
    *,
    name: str = "blue",
    script: str = "ok.py",
    **settings_: Any,
) -> BatchDeployment:
    """A deployment of the fixture scripts with the worker's own interpreter."""
    workspace = endpoint.workspace
    model = ModelAsset.objects.filter(workspace=workspace, name="scorer-model").first()
    model = model or make_custom_model(workspace)
    code = make_code(f"code-{name}-{BatchDeployment.objects.count()}")
    return create_deployment(
        endpoint,
        user,
        name=name,
        model=str(model),
        code_path=str(code),
        scoring_script=script,
        environment=str(make_worker_env(workspace)),
        settings={"resource_monitor_interval": 0, **settings_},
    )


def deployment_post(**fields: Any) -> dict[str, Any]:
    """A complete deployment form submission with DESIGN default settings."""
    defaults = setting_initial(Settings().as_dict())
    return {**defaults, "compute": "default", **fields}


# Tests.


@pytest.fixture(scope="module")
def mlflow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from studio.samples import save_sklearn_model

    return save_sklearn_model(
        tmp_path_factory.mktemp("mlflow") / "model", n_estimators=3
    )


@pytest.fixture
def endpoint(cast) -> BatchEndpoint:
    return make_endpoint(cast.workspace, cast.owner)


def create_url(endpoint: BatchEndpoint) -> str:
    return reverse(
        "studio:deployment-create", args=[endpoint.workspace.name, endpoint.name]
    )


def test_it_creates_a_no_code_deployment_of_an_mlflow_model(
    cast, endpoint, mlflow_model_dir
):
    model = make_mlflow_model(cast.workspace, mlflow_model_dir)

    response = cast.client("contributor").post(
        create_url(endpoint), deployment_post(name="blue", model=f"{model.name}@latest")
    )

    deployment = BatchDeployment.objects.get(endpoint=endpoint)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "studio:deployment-detail", args=["team", "scorer", "blue", 1]
    )
    assert deployment.model == model and deployment.code_path == ""
    assert deployment.settings == Settings().as_dict()
    endpoint.refresh_from_db()
    assert endpoint.default_deployment == "blue"


def test_it_shows_every_setting_with_its_design_default(cast, endpoint):
    response = cast.client("contributor").get(create_url(endpoint))

    form = response.context["form"]
    assert response.status_code == 200
    assert form["mini_batch_size"].value() == "10"
    assert form["instance_count"].value() == "1"
    assert form["max_concurrency_per_instance"].value() == "1"
    assert form["output_action"].value() == "append_row"
    assert form["output_file_name"].value() == "predictions.csv"
    assert form["max_retries"].value() == "3"
    assert form["timeout"].value() == "30"
    assert form["error_threshold"].value() == "-1"
    assert form["mini_batch_error_threshold"].value() == "-1"
    assert form["logging_level"].value() == "info"
    assert form["environment_variables"].value() == ""
    assert form["resource_monitor_interval"].value() == "600"
    assert form["compute"].value() == "default"


def test_it_offers_the_workspaces_models_and_environments_to_choose(cast, endpoint):
    make_custom_model(cast.workspace)
    make_custom_model(cast.workspace)
    make_worker_env(cast.workspace)

    body = cast.client("contributor").get(create_url(endpoint)).content.decode()

    assert '<option value="scorer-model@latest">' in body
    assert '<option value="scorer-model:2">' in body
    assert '<option value="worker:1">' in body


def test_it_copies_server_code_so_the_revision_never_changes(cast, endpoint):
    model = make_custom_model(cast.workspace)
    env = make_worker_env(cast.workspace)
    code = make_code()

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(
            name="blue",
            model=str(model),
            code_path=str(code),
            scoring_script="ok.py",
            environment=str(env),
            environment_variables="GREETING=hello\n\nTARGET = world",
        ),
    )
    (code / "ok.py").write_text("changed after deployment\n")

    deployment = BatchDeployment.objects.get(endpoint=endpoint)
    assert response.status_code == 302
    copied = Path(deployment.code_path)
    assert copied.is_relative_to(settings.STUDIO_DATASTORE)
    assert (copied / "ok.py").read_text() == (SCRIPTS / "ok.py").read_text()
    assert deployment.scoring_script == "ok.py" and deployment.environment == env
    assert deployment.settings["environment_variables"] == {
        "GREETING": "hello",
        "TARGET": "world",
    }


def test_it_keeps_the_sub_folders_of_an_uploaded_code_folder(cast, endpoint):
    model = make_custom_model(cast.workspace)
    env = make_worker_env(cast.workspace)
    files = [
        SimpleUploadedFile("score.py", b"def init(): pass\ndef run(b): return b\n"),
        SimpleUploadedFile("helpers.py", b"VALUE = 1\n"),
    ]

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(
            name="blue",
            model=str(model),
            code_files=files,
            code_relative_paths=json.dumps(
                ["project/score.py", "project/lib/helpers.py"]
            ),
            scoring_script="score.py",
            environment=str(env),
        ),
    )

    deployment = BatchDeployment.objects.get(endpoint=endpoint)
    assert response.status_code == 302
    assert (Path(deployment.code_path) / "lib" / "helpers.py").is_file()
    assert (Path(deployment.code_path) / "score.py").is_file()


def test_it_unpacks_an_uploaded_zip_of_the_code(cast, endpoint):
    model = make_custom_model(cast.workspace)
    env = make_worker_env(cast.workspace)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(SCRIPTS / "ok.py", "code/ok.py")

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(
            name="blue",
            model=str(model),
            code_zip=SimpleUploadedFile("code.zip", buffer.getvalue()),
            scoring_script="ok.py",
            environment=str(env),
        ),
    )

    deployment = BatchDeployment.objects.get(endpoint=endpoint)
    assert response.status_code == 302
    assert (Path(deployment.code_path) / "ok.py").is_file()


def test_it_refuses_a_non_mlflow_model_without_code_or_environment(cast, endpoint):
    model = make_custom_model(cast.workspace)

    response = cast.client("contributor").post(
        create_url(endpoint), deployment_post(name="blue", model=str(model))
    )

    errors = response.context["form"].non_field_errors()
    assert response.status_code == 200
    assert "no-code deployment is for MLflow models only" in errors[0]
    assert "code_configuration and environment" in errors[0]
    assert "environment: {python_requirements: []}" in errors[0]
    assert not BatchDeployment.objects.exists()
    assert not (Path(settings.STUDIO_DATASTORE) / "team" / "code").exists()


def test_it_refuses_a_model_that_does_not_exist_naming_close_ones(cast, endpoint):
    make_custom_model(cast.workspace, "scorer-model")

    response = cast.client("contributor").post(
        create_url(endpoint), deployment_post(name="blue", model="scorer-modl:1")
    )

    assert response.context["form"].errors["model"] == [
        "model 'scorer-modl:1' not found; close names: scorer-model"
    ]
    assert not BatchDeployment.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mini_batch_size", "0", "mini_batch_size: must be a whole number >= 1"),
        ("instance_count", "two", "instance_count: must be a whole number >= 1"),
        ("max_concurrency_per_instance", "0", "max_concurrency_per_instance: must"),
        ("output_action", "append", "output_action: must be one of append_row,"),
        ("output_file_name", "a/b.csv", "output_file_name: must be a plain file"),
        ("max_retries", "-1", "max_retries: must be a whole number >= 0"),
        ("timeout", "0", "timeout: must be a number of seconds > 0"),
        ("error_threshold", "-2", "error_threshold: must be a whole number >= -1"),
        ("mini_batch_error_threshold", "x", "mini_batch_error_threshold: must be"),
        ("logging_level", "loud", "logging_level: must be one of debug, info,"),
        ("environment_variables", "NO_EQUALS", "environment_variables: line 1"),
        ("resource_monitor_interval", "-5", "resource_monitor_interval: must be"),
    ],
)
def test_it_refuses_a_bad_setting_naming_the_field(
    cast, endpoint, mlflow_model_dir, field, value, message
):
    model = make_mlflow_model(cast.workspace, mlflow_model_dir)

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(name="blue", model=str(model), **{field: value}),
    )

    errors = response.context["form"].errors
    assert list(errors) == [field]
    assert errors[field][0].startswith(message)
    assert not BatchDeployment.objects.exists()


def test_it_refuses_code_outside_the_allowed_roots(cast, endpoint, tmp_path):
    model = make_custom_model(cast.workspace)
    outside = tmp_path / "elsewhere"
    shutil.copytree(SCRIPTS, outside)

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(
            name="blue",
            model=str(model),
            code_path=str(outside),
            scoring_script="ok.py",
            environment=str(make_worker_env(cast.workspace)),
        ),
    )

    assert (
        "is outside the allowed roots"
        in response.context["form"].errors["code_path"][0]
    )
    assert not BatchDeployment.objects.exists()


@pytest.mark.parametrize("name", ["b", "9lives", "blue_green", "x" * 33])
def test_it_refuses_a_deployment_name_against_the_rules(
    cast, endpoint, mlflow_model_dir, name
):
    model = make_mlflow_model(cast.workspace, mlflow_model_dir)

    response = cast.client("contributor").post(
        create_url(endpoint), deployment_post(name=name, model=str(model))
    )

    assert response.context["form"].errors["name"] == [
        f"{name!r} is not a valid deployment name: 3 to 32 characters, starting"
        " with a letter, then letters, digits or '-'"
    ]
    assert not BatchDeployment.objects.exists()


def test_it_refuses_a_code_folder_and_a_zip_at_once(cast, endpoint):
    model = make_custom_model(cast.workspace)

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(
            name="blue",
            model=str(model),
            code_files=[SimpleUploadedFile("ok.py", b"def init(): pass\n")],
            code_zip=SimpleUploadedFile("code.zip", b"PK"),
            scoring_script="ok.py",
        ),
    )

    assert response.context["form"].errors["code_zip"] == [
        "give a code folder or a zip, not both"
    ]
    assert not BatchDeployment.objects.exists()


@pytest.mark.parametrize("script", ["missing.py", "../ok.py", ""])
def test_it_refuses_a_scoring_script_that_is_not_in_the_code(cast, endpoint, script):
    model = make_custom_model(cast.workspace)

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(
            name="blue",
            model=str(model),
            code_path=str(make_code()),
            scoring_script=script,
            environment=str(make_worker_env(cast.workspace)),
        ),
    )

    assert response.context["form"].errors["scoring_script"]
    assert not BatchDeployment.objects.exists()
    assert not (Path(settings.STUDIO_DATASTORE) / "team" / "code").exists()


def test_it_prefills_an_update_from_the_current_revision(cast, endpoint):
    make_script_deployment(endpoint, cast.owner, mini_batch_size=4, timeout=12.5)

    response = cast.client("contributor").get(create_url(endpoint) + "?from=blue")

    form = response.context["form"]
    assert form["name"].value() == "blue"
    assert form["model"].value() == "scorer-model:1"
    assert form["environment"].value() == "worker:1"
    assert form["scoring_script"].value() == "ok.py"
    assert form["keep_code"].value() is True
    assert form["mini_batch_size"].value() == "4"
    assert form["timeout"].value() == "12.5"
    assert b"new revision after r1" in response.content


def test_an_update_makes_a_new_revision_and_leaves_the_old_one_as_it_was(
    cast, endpoint
):
    first = make_script_deployment(endpoint, cast.owner, mini_batch_size=4)
    job = Job.objects.create(
        workspace=cast.workspace,
        name="ran-on-r1",
        endpoint=endpoint,
        endpoint_name="scorer",
        deployment=first,
        deployment_label="blue r1",
    )
    post = deployment_post(
        **{
            **setting_initial(first.settings),
            "name": "blue",
            "model": "scorer-model:1",
            "keep_code": "on",
            "scoring_script": "ok.py",
            "environment": "worker:1",
            "mini_batch_size": "7",
        }
    )

    response = cast.client("contributor").post(create_url(endpoint), post)

    second = BatchDeployment.objects.get(endpoint=endpoint, revision=2)
    first_again = BatchDeployment.objects.get(pk=first.pk)
    assert response.status_code == 302
    assert second.name == "blue" and second.settings["mini_batch_size"] == "7"
    assert second.code_path == first.code_path
    assert first_again.settings == first.settings
    assert first_again.settings["mini_batch_size"] == "4"
    assert Job.objects.get(pk=job.pk).deployment_id == first.pk
    assert endpoint.current_deployment().revision == 2


def test_it_refuses_to_keep_code_when_the_deployment_has_none(
    cast, endpoint, mlflow_model_dir
):
    model = make_mlflow_model(cast.workspace, mlflow_model_dir)

    response = cast.client("contributor").post(
        create_url(endpoint),
        deployment_post(name="blue", model=str(model), keep_code="on"),
    )

    assert "no current revision with code to keep" in str(
        response.context["form"].non_field_errors()
    )


def test_it_switches_the_default_deployment(cast, endpoint):
    make_script_deployment(endpoint, cast.owner, name="blue")
    make_script_deployment(endpoint, cast.owner, name="green")

    response = cast.client("contributor").post(
        reverse("studio:endpoint-set-default", args=["team", "scorer"]),
        {"deployment": "green"},
    )

    endpoint.refresh_from_db()
    assert response.status_code == 302
    assert endpoint.default_deployment == "green"


def test_it_refuses_an_unknown_default_deployment(cast, endpoint):
    make_script_deployment(endpoint, cast.owner, name="blue")

    response = cast.client("contributor").post(
        reverse("studio:endpoint-set-default", args=["team", "scorer"]),
        {"deployment": "purple"},
        follow=True,
    )

    endpoint.refresh_from_db()
    assert endpoint.default_deployment == "blue"
    assert [str(m) for m in response.context["messages"]] == [
        "batch deployment 'purple' not found on endpoint 'scorer'"
    ]


def test_the_deployment_page_shows_the_revision_its_settings_and_its_jobs(
    cast, endpoint
):
    first = make_script_deployment(endpoint, cast.owner, mini_batch_size=4)
    make_script_deployment(endpoint, cast.owner, mini_batch_size=8)
    Job.objects.create(
        workspace=cast.workspace,
        name="ran-on-r1",
        endpoint=endpoint,
        endpoint_name="scorer",
        deployment=first,
        deployment_label="blue r1",
    )

    response = cast.client("reader").get(
        reverse("studio:deployment-detail", args=["team", "scorer", "blue", 1])
    )

    body = response.content.decode()
    assert response.context["deployment"] == first
    assert [d.revision for d in response.context["revisions"]] == [2, 1]
    assert "ran-on-r1" in body and "ok.py" in body
    assert "<dt>mini_batch_size</dt><dd>4</dd>" in body
    assert "Update (new revision)" not in body


def test_it_answers_404_for_a_revision_that_does_not_exist(cast, endpoint):
    make_script_deployment(endpoint, cast.owner)

    response = cast.client("reader").get(
        reverse("studio:deployment-detail", args=["team", "scorer", "blue", 9])
    )

    assert response.status_code == 404
