"""REST API: models, data assets and environments (list, versions, register)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from studio.models import DataAsset, Environment, ModelAsset

from .test_api_support import api, api_url

WRITE_ROLES = [("owner", 201), ("contributor", 201), ("reader", 403), ("outsider", 404)]
READ_ROLES = [("owner", 200), ("contributor", 200), ("reader", 200), ("outsider", 404)]


def server_folder(name: str, files: int = 2) -> Path:
    folder = Path(settings.STUDIO_ALLOWED_ROOTS[0]) / name
    folder.mkdir(parents=True)
    for number in range(files):
        (folder / f"part_{number}.txt").write_text(f"{number}\n")
    return folder


def add_model(workspace, name: str = "scorer", version: int = 1) -> ModelAsset:
    return ModelAsset.objects.create(
        workspace=workspace,
        name=name,
        version=version,
        type=ModelAsset.Type.CUSTOM,
        path="/models",
    )


@pytest.mark.parametrize(("who", "expected"), WRITE_ROLES)
def test_it_registers_a_model_from_a_server_path_for_contributors(cast, who, expected):
    folder = server_folder("weights")

    response = api(cast, who).post(
        api_url("model-list", "team"),
        {"name": "scorer", "server_path": str(folder), "tags": {"team": "fraud"}},
        format="json",
    )

    assert response.status_code == expected, response.content
    if expected == 201:
        body = response.json()
        assert (body["name"], body["version"], body["type"]) == (
            "scorer",
            1,
            "custom_model",
        )
        assert body["tags"] == {"team": "fraud"} and body["created_by"] == who
        assert response["Location"] == body["url"]
        assert body["url"].endswith(api_url("model-version", "team", "scorer", 1))
    else:
        assert not ModelAsset.objects.exists()


def test_it_registers_uploaded_model_files_keeping_their_folders(cast):
    files = [
        SimpleUploadedFile("weights.txt", b"1\n"),
        SimpleUploadedFile("vocab.txt", b"a\n"),
    ]

    response = api(cast, "contributor").post(
        api_url("model-list", "team"),
        {
            "name": "uploaded",
            "files": files,
            "upload_names": ["model/weights.txt", "model/extra/vocab.txt"],
            "tags": json.dumps({"source": "api"}),
        },
        format="multipart",
    )

    assert response.status_code == 201, response.content
    model = ModelAsset.objects.get(name="uploaded")
    assert (Path(model.path) / "extra" / "vocab.txt").read_text() == "a\n"
    assert model.tags == {"source": "api"}


def test_it_reports_a_services_refusal_by_field(cast):
    response = api(cast, "owner").post(
        api_url("model-list", "team"),
        {"name": "bad name!", "server_path": "/etc"},
        format="json",
    )

    assert response.status_code == 400
    body = response.json()
    assert "is not a valid name" in body["name"][0]


def test_it_refuses_two_sources_with_a_message_for_the_whole_request(cast):
    folder = server_folder("weights")

    response = api(cast, "owner").post(
        api_url("model-list", "team"),
        {"name": "x", "server_path": str(folder), "mlflow_uri": "models:/x/1"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": [
            "give exactly one source: files or a folder to upload, a server path,"
            " or an MLflow model URI"
        ]
    }


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"tags": ["a"]}, "tags", "must be a JSON object"),
        ({"tags": {"a": 1}}, "tags", "tags map strings to strings"),
        ({"type": "onnx"}, "type", '"onnx" is not a valid choice.'),
        ({"server_path": "a\x00b"}, "server_path", "Null characters are not allowed."),
    ],
)
def test_it_checks_the_shape_of_a_request(cast, payload, field, message):
    response = api(cast, "owner").post(
        api_url("model-list", "team"), {"name": "m", **payload}, format="json"
    )

    assert response.status_code == 400
    assert response.json()[field] == [message]


@pytest.mark.parametrize(("who", "expected"), READ_ROLES)
def test_it_lists_the_newest_version_of_each_model(cast, who, expected):
    add_model(cast.workspace, "alpha", 1)
    add_model(cast.workspace, "alpha", 2)
    add_model(cast.workspace, "beta", 1)
    add_model(cast.other_workspace, "hidden", 1)

    response = api(cast, who).get(api_url("model-list", "team"))

    assert response.status_code == expected
    if expected == 200:
        rows = response.json()["results"]
        assert [(r["name"], r["version"], r["version_count"]) for r in rows] == [
            ("alpha", 2, 2),
            ("beta", 1, 1),
        ]


def test_it_shows_a_models_newest_version_all_versions_and_one_version(cast):
    add_model(cast.workspace, "alpha", 1)
    add_model(cast.workspace, "alpha", 2)
    client = api(cast, "reader")

    newest = client.get(api_url("model-detail", "team", "alpha")).json()
    versions = client.get(api_url("model-versions", "team", "alpha")).json()
    first = client.get(api_url("model-version", "team", "alpha", 1)).json()

    assert newest["version"] == 2
    assert [row["version"] for row in versions["results"]] == [2, 1]
    assert first["version"] == 1 and first["page"].endswith("/models/alpha/1/")


@pytest.mark.parametrize(
    ("route", "args", "message"),
    [
        ("model-detail", ["alpah"], "model 'alpah' not found in workspace 'team'"),
        ("model-versions", ["alpah"], "model 'alpah' not found in workspace 'team'"),
        ("model-version", ["alpha", 7], "model 'alpha:7' not found in workspace"),
    ],
)
def test_it_names_the_kind_and_close_names_when_a_model_is_missing(
    cast, route, args, message
):
    add_model(cast.workspace, "alpha", 1)

    response = api(cast, "reader").get(api_url(route, "team", *args))

    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith(message) and detail.endswith("; close names: alpha")


def test_outsiders_learn_nothing_about_names(cast):
    add_model(cast.workspace, "alpha", 1)

    response = api(cast, "outsider").get(api_url("model-detail", "team", "alpah"))

    assert response.json() == {"detail": "workspace 'team' not found"}


def test_it_registers_data_from_a_url(cast):
    response = api(cast, "contributor").post(
        api_url("data-list", "team"),
        {"name": "remote", "type": "uri_file", "url": "https://example.org/a.csv"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["path"] == "https://example.org/a.csv"
    assert DataAsset.objects.get().type == "uri_file"


def test_it_registers_data_from_a_server_path_and_from_uploads(cast):
    folder = server_folder("texts", files=3)
    client = api(cast, "contributor")

    from_path = client.post(
        api_url("data-list", "team"),
        {"name": "texts", "server_path": str(folder)},
        format="json",
    )
    uploaded = client.post(
        api_url("data-list", "team"),
        {"name": "texts", "files": [SimpleUploadedFile("one.txt", b"1\n")]},
        format="multipart",
    )

    assert (from_path.status_code, uploaded.status_code) == (201, 201)
    assert [from_path.json()["version"], uploaded.json()["version"]] == [1, 2]
    assert (Path(uploaded.json()["path"]) / "one.txt").read_text() == "1\n"


@pytest.mark.parametrize(("who", "expected"), READ_ROLES)
def test_it_shows_data_assets_to_members(cast, who, expected):
    DataAsset.objects.create(
        workspace=cast.workspace, name="texts", version=1, type="uri_folder", path="/d"
    )

    response = api(cast, who).get(api_url("data-version", "team", "texts", 1))

    assert response.status_code == expected


def test_it_refuses_a_url_with_credentials(cast):
    response = api(cast, "owner").post(
        api_url("data-list", "team"),
        {"name": "remote", "url": "https://user:pw@example.org/a.csv"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"url": ["the URL must not hold a user name or password"]}


@pytest.mark.parametrize(("who", "expected"), WRITE_ROLES)
def test_it_creates_environments_for_contributors(cast, who, expected):
    response = api(cast, who).post(
        api_url("environment-list", "team"),
        {"name": "sklearn", "python_requirements": ["scikit-learn==1.9.1"]},
        format="json",
    )

    assert response.status_code == expected
    if expected == 201:
        assert response.json()["python_requirements"] == ["scikit-learn==1.9.1"]


def test_it_reads_the_pip_section_of_an_uploaded_conda_file(cast):
    conda = b"dependencies:\n  - python=3.11\n  - pip:\n    - pandas==3.1.1\n"

    response = api(cast, "owner").post(
        api_url("environment-list", "team"),
        {"name": "from-conda", "conda_file": SimpleUploadedFile("conda.yml", conda)},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    assert Environment.objects.get().python_requirements == ["pandas==3.1.1"]
    listed = api(cast, "reader").get(api_url("environment-list", "team")).json()
    assert [row["name"] for row in listed["results"]] == ["from-conda"]
