"""`manage.py environment create|list|show`: pip lines, a conda file's pip section."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from studio.models import Environment
from tests.studio.test_command_support import run, run_json, write_yaml

CONDA = """\
name: scoring
dependencies:
  - python=3.11
  - pip
  - pip:
    - pandas>=2
"""


def test_it_creates_an_environment_from_azure_yaml(cast, tmp_path):
    write_yaml(tmp_path / "conda.yml", CONDA)
    path = write_yaml(
        tmp_path / "env" / "environment.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
        "name: scoring\n"
        "image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\n"
        "conda_file: ../conda.yml\n"
        "python_requirements: [numpy]\n",
    )

    shown = run_json("environment", "create", "--file", str(path))

    assert (shown["name"], shown["version"]) == ("scoring", 1)
    assert shown["python_requirements"] == ["numpy", "pandas>=2"]
    assert Environment.objects.get().created_by == cast.owner


def test_an_environment_with_no_requirements_is_the_workers_python(cast):
    shown = run_json("environment", "create", "--name", "worker-python")

    assert shown["python_requirements"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: e\npython_requirements: numpy\n", "environment.yml, line 2: python_"),
        ("name: e\nconda_file: ./missing.yml\n", "environment.yml, line 2: conda_file"),
        ("name: e\nbuild: {path: .}\n", "environment.yml, line 2: build: unknown"),
        (
            "name: e\npython_requirements: ['-r requirements.txt']\n",
            "environment.yml, line 2: python_requirements: '-r requirements.txt': list",
        ),
    ],
)
def test_it_refuses_a_bad_environment_file(cast, tmp_path, text, expected):
    path = write_yaml(tmp_path / "environment.yml", text)

    with pytest.raises(CommandError) as caught:
        run("environment", "create", "--file", str(path))

    assert str(caught.value).startswith(expected)
    assert not Environment.objects.exists()


def test_it_lists_and_shows_environments(cast):
    run("environment", "create", "--name", "worker-python")
    run("environment", "create", "--name", "worker-python", "--description", "again")

    listed = run_json("environment", "list", user="reader")
    shown = run_json("environment", "show", "-n", "worker-python", "-v", "1")

    assert [(e["name"], e["version"], e["versions"]) for e in listed] == [
        ("worker-python", 2, 2)
    ]
    assert shown["description"] == ""
