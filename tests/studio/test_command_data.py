"""`manage.py data create|list|show`: local files copied, URLs kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management.base import CommandError

from studio.models import DataAsset
from tests.studio import test_command_support as support
from tests.studio.test_command_support import DATA_FILES, run, run_json, write_yaml

azure_example = support.azure_example
mlflow_model_dir = support.mlflow_model_dir


def test_it_registers_a_folder_from_azure_yaml(cast, azure_example, settings):
    shown = run_json("data", "create", "--file", str(azure_example / "data.yml"))

    asset = DataAsset.objects.get()
    assert (shown["name"], shown["version"], shown["type"]) == (
        "sample-features", 1, "uri_folder",
    )  # fmt: skip
    folder = Path(asset.path)
    assert folder.is_relative_to(settings.STUDIO_DATASTORE)
    assert len(list(folder.glob("*.csv"))) == DATA_FILES


def test_it_registers_one_file_and_a_url_from_flags(cast, azure_example):
    csv = next((azure_example / "data").iterdir())

    one = run_json("data", "create", "-n", "one", "--type", "uri_file", "-p", str(csv))
    url = run_json("data", "create", "-n", "remote", "-p", "https://example.com/x.csv",
                   "--type", "uri_file")  # fmt: skip

    assert Path(one["path"]).read_text() == csv.read_text()
    assert url["path"] == "https://example.com/x.csv"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: d\ntype: uri_file\npath: ./data\n",
            "data.yml, line 2: type: a uri_file data asset is exactly one file; use",
        ),
        (
            "name: d\ntype: mltable\npath: ./data\n",
            "data.yml, line 2: type: must be one of uri_file, uri_folder",
        ),
        (
            "name: d\npath: azureml://datastores/blob/paths/x\n",
            "data.yml, line 2: path: azureml://datastores/blob/paths/x is not",
        ),
        ("name: d\npath: [./data]\n", "data.yml, line 2: path: must be text"),
        ("name: d\npath: ./data\ntags: [a]\n", "data.yml, line 3: tags: must be a"),
    ],
)
def test_it_refuses_a_bad_data_file(cast, azure_example, text, expected):
    path = write_yaml(azure_example / "data.yml", text)

    with pytest.raises(CommandError) as caught:
        run("data", "create", "--file", str(path))

    assert str(caught.value).startswith(expected)
    assert not DataAsset.objects.exists()


def test_it_lists_and_shows_data_assets(cast, azure_example):
    run("data", "create", "--file", str(azure_example / "data.yml"), "--set",
        "tags.team=fraud")  # fmt: skip

    table = run("data", "list", "-o", "table", user="reader").splitlines()
    shown = run_json("data", "show", "-n", "sample-features", user="reader")

    assert table[0].split() == ["name", "version", "type", "versions", "path"]
    assert table[2].split()[:4] == ["sample-features", "1", "uri_folder", "1"]
    assert shown["tags"] == {"team": "fraud"}
