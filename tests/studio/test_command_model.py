"""`manage.py model create|list|show`: Azure model YAML or flags, files copied."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management.base import CommandError

from studio.models import ModelAsset
from tests.studio import test_command_support as support
from tests.studio.test_command_support import run, run_json, write_yaml

azure_example = support.azure_example
mlflow_model_dir = support.mlflow_model_dir


def test_it_registers_a_model_folder_from_azure_yaml(cast, azure_example, settings):
    shown = run_json("model", "create", "--file", str(azure_example / "model.yml"))

    model = ModelAsset.objects.get()
    assert (shown["name"], shown["version"]) == ("sample-classifier", 1)
    assert shown["id"] == "azureml:sample-classifier:1"
    assert shown["type"] == model.type == ModelAsset.Type.MLFLOW
    assert "sklearn" in shown["mlflow"]["flavors"]
    assert Path(model.path).is_relative_to(settings.STUDIO_DATASTORE)
    assert sorted(p.name for p in Path(model.path).iterdir()) == sorted(
        p.name for p in (azure_example / "model").iterdir()
    )
    assert model.created_by == cast.owner
    assert shown["studio_url"] == "/w/team/models/sample-classifier/1/"


def test_it_registers_a_file_from_flags_as_the_next_version(cast, tmp_path):
    weights = write_yaml(tmp_path / "weights.bin", "0101")
    arguments = ["model", "create", "--name", "tiny", "--path", str(weights)]

    run(*arguments)
    shown = run_json(*arguments, "--description", "second", "--version", "2")

    assert (shown["version"], shown["type"]) == (2, ModelAsset.Type.CUSTOM)
    assert (Path(shown["path"]) / "weights.bin").read_text() == "0101"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: m\npath: ./model\nversion: 3\n",
            "version: 'm' gets version 1 next, not 3;",
        ),
        ("name: m\npath: ./nowhere\n", "model.yml, line 2: path: "),
        (
            "name: m\npath: azureml://jobs/1/outputs/model\n",
            "model.yml, line 2: path: azureml://jobs/1/outputs/model is not supported;",
        ),
        ("name: m\npath: ./model\ntype: triton_model\n", "model.yml, line 3: type: "),
        ("name: m\npath: ./model\nflavour: x\n", "model.yml, line 3: flavour: unknown"),
        ("path: ./model\n", "model.yml: name: a model needs a name"),
    ],
)
def test_it_refuses_a_bad_model_file(cast, azure_example, text, expected):
    path = write_yaml(azure_example / "model.yml", text)

    with pytest.raises(CommandError) as caught:
        run("model", "create", "--file", str(path))

    assert str(caught.value).startswith(expected)
    assert not ModelAsset.objects.exists()


def test_a_reader_cannot_register_a_model(cast, azure_example):
    with pytest.raises(CommandError, match="needs the contributor role"):
        run("model", "create", "-f", str(azure_example / "model.yml"), user="reader")


def test_it_lists_latest_versions_and_shows_one(cast, azure_example):
    for _ in range(2):
        run("model", "create", "--file", str(azure_example / "model.yml"))

    listed = run_json("model", "list", user="reader")
    versions = run("model", "list", "--name", "sample-classifier", "--query",
                   "version", "-o", "tsv")  # fmt: skip
    first = run_json("model", "show", "-n", "sample-classifier", "-v", "1")
    latest = run("model", "show", "-n", "sample-classifier", "--query", "version")

    assert [(m["name"], m["version"], m["versions"]) for m in listed] == [
        ("sample-classifier", 2, 2)
    ]
    assert versions == "2\n1\n"
    assert first["version"] == 1
    assert latest == "2\n"
    with pytest.raises(CommandError, match=r"^model 'sample-clasifier' not found;"):
        run("model", "show", "-n", "sample-clasifier")
