"""Registering a model from an MLflow registry: models:/name/version or @alias."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from studio.models import ModelAsset
from studio.samples import save_sklearn_model


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> str:
    """A file-store MLflow registry: clf versions 1 and 2, alias champion -> 1.

    Built once with mlflow-skinny's own client, as a team's training runs would.
    """
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    model = save_sklearn_model(root / "model", n_estimators=2)
    uri = (root / "mlruns").as_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.create_registered_model("clf")
        for _ in range(2):
            run = client.create_run("0")
            client.log_artifacts(run.info.run_id, str(model), "model")
            client.set_terminated(run.info.run_id)
            client.create_model_version(
                "clf", f"runs:/{run.info.run_id}/model", run.info.run_id
            )
        client.set_registered_model_alias("clf", "champion", "1")
    return uri


@pytest.fixture
def mlflow_on(settings, monkeypatch, registry):
    settings.STUDIO_MLFLOW_TRACKING_URI = registry
    # MLflow refuses file stores unless told; operators set this for one.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return settings


def register(cast, data: dict, who: str = "contributor"):
    return cast.client(who).post(reverse("studio:model-register", args=["team"]), data)


def snapshot() -> tuple[int, list[str]]:
    root = Path(django_settings.STUDIO_DATASTORE)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    return ModelAsset.objects.count(), paths


def test_it_imports_a_version_under_the_registry_name(cast, mlflow_on):
    response = register(cast, {"mlflow_uri": "models:/clf/2"})

    model = ModelAsset.objects.get()
    assert response["Location"] == reverse(
        "studio:model-detail", args=["team", "clf", 1]
    )
    assert (model.name, model.type, model.source) == (
        "clf",
        "mlflow_model",
        "models:/clf/2",
    )
    assert (Path(model.path) / "MLmodel").is_file()
    assert Path(model.path).is_relative_to(Path(django_settings.STUDIO_DATASTORE))
    assert model.mlflow["flavors"] == ["python_function", "sklearn"]


def test_it_resolves_an_alias_to_its_version_at_registration(cast, mlflow_on):
    register(cast, {"name": "champion-clf", "mlflow_uri": "models:/clf@champion"})

    model = ModelAsset.objects.get()
    assert (model.name, model.version, model.source) == (
        "champion-clf",
        1,
        "models:/clf/1",
    )


def test_it_leaves_no_staging_behind_after_an_import(cast, mlflow_on):
    register(cast, {"mlflow_uri": "models:/clf/1"})

    assert not any(".staging" in path for path in snapshot()[1])


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/clf/7", "models:/clf/7 not found in the MLflow registry"),
        ("models:/clf@nope", "models:/clf@nope not found in the MLflow registry"),
        ("models:/missing/1", "models:/missing/1 not found in the MLflow registry"),
        ("runs:/abc/model", "is not a registered model URI"),
        ("models:/clf/Production", "is not a registered model URI"),
    ],
)
def test_it_refuses_what_the_registry_does_not_hold(cast, mlflow_on, uri, message):
    before = snapshot()

    response = register(cast, {"mlflow_uri": uri})

    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    assert snapshot() == before


def test_it_refuses_a_model_over_the_upload_limit(cast, mlflow_on):
    mlflow_on.STUDIO_MAX_UPLOAD_MB = 0
    before = snapshot()

    response = register(cast, {"mlflow_uri": "models:/clf/1"})

    assert "larger than STUDIO_MAX_UPLOAD_MB (0 MB)" in response.content.decode()
    assert snapshot() == before


def test_it_explains_the_import_is_off_without_a_tracking_uri(cast, settings):
    settings.STUDIO_MLFLOW_TRACKING_URI = ""
    form = cast.client("contributor").get(
        reverse("studio:model-register", args=["team"])
    )

    response = register(cast, {"mlflow_uri": "models:/clf/1"})

    assert "sets STUDIO_MLFLOW_TRACKING_URI" in form.content.decode()
    assert "import from MLflow is turned off" in response.content.decode()
    assert ModelAsset.objects.count() == 0


def test_it_names_the_switch_a_file_store_needs(cast, settings, tmp_path):
    # A store no test has opened yet: MLflow caches the stores it has opened.
    settings.STUDIO_MLFLOW_TRACKING_URI = (tmp_path / "mlruns-unused").as_uri()

    response = register(cast, {"mlflow_uri": "models:/clf/1"})

    assert "MLFLOW_ALLOW_FILE_STORE=true" in response.content.decode()
    assert ModelAsset.objects.count() == 0


def test_it_explains_a_database_store_needs_full_mlflow(cast, settings, tmp_path):
    settings.STUDIO_MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path}/mlflow.db"

    response = register(cast, {"mlflow_uri": "models:/clf/1"})

    assert "needs the full mlflow package" in response.content.decode()
    assert not (tmp_path / "mlflow.db").exists()


def test_it_lets_readers_not_import(cast, mlflow_on):
    assert (
        register(cast, {"mlflow_uri": "models:/clf/1"}, who="reader").status_code == 403
    )
    assert ModelAsset.objects.count() == 0
