"""Deployment YAML in both Azure shapes; errors name the field and allowed values."""

from __future__ import annotations

import pytest
import yaml

from scoring_engine import SpecError, apply_overrides, load_deployment
from scoring_engine.config import MiniBatchSize, parse_assignments
from tests.conftest import SCRIPTS


def write(tmp_path, text: str):
    path = tmp_path / "deployment.yml"
    path.write_text(text)
    return path


@pytest.fixture
def code(tmp_path):
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "score.py").write_text((SCRIPTS / "ok.py").read_text())
    return folder


def test_it_reads_the_older_top_level_shape_with_relative_paths(tmp_path, code):
    path = write(
        tmp_path,
        """
$schema: https://azuremlschemas.azureedge.net/latest/batchDeployment.schema.json
name: older
endpoint_name: my-endpoint
code_configuration: {code: ./code, scoring_script: score.py}
environment:
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
  python_requirements: []
compute: azureml:batch-cluster
resources: {instance_count: 2}
max_concurrency_per_instance: 3
mini_batch_size: 5
output_action: summary_only
retry_settings: {max_retries: 4, timeout: 60}
error_threshold: 7
logging_level: DEBUG
""",
    )

    spec = load_deployment(path)

    assert spec.code_dir == code
    settings = spec.settings
    assert settings.instance_count == 2
    assert settings.max_concurrency_per_instance == 3
    assert settings.mini_batch_size == MiniBatchSize(count=5)
    assert (settings.max_retries, settings.timeout) == (4, 60)
    assert settings.error_threshold == 7
    assert settings.logging_level == "debug"
    assert settings.output_action == "summary_only"


def test_it_reads_the_newer_settings_block_and_defaults(tmp_path, code):
    path = write(
        tmp_path,
        """
type: model
code_configuration: {code: code, scoring_script: score.py}
environment: {python_requirements: []}
settings:
  mini_batch_size: 10MB
  environment_variables: {A: 1}
""",
    )

    settings = load_deployment(path).settings

    assert settings.mini_batch_size == MiniBatchSize(size_bytes=10 * 1024**2)
    assert settings.environment_variables == {"A": "1"}
    assert settings.output_file_name == "predictions.csv"
    assert (settings.max_retries, settings.timeout) == (3, 30)
    assert settings.resource_monitor_interval == 600


def test_a_model_folder_with_mlmodel_is_mlflow_whatever_type_says(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    path = write(tmp_path, "model: {path: model, type: custom_model}\n")

    spec = load_deployment(path)

    assert spec.model.is_mlflow and spec.uses_builtin_scorer


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mini_batch_size: 0\n", "mini_batch_size: must be a whole number >= 1"),
        ("mini_batch_sise: 3\n", "mini_batch_sise: unknown field"),
        ("settings: {timeout: 3}\n", "settings.timeout: unknown field"),
        ("retry_settings: {max_retries: -1}\n", "max_retries: must be a whole number"),
        ("retry_settings: {timeout: 0}\n", "timeout: must be a number of seconds > 0"),
        ("logging_level: loud\n", "logging_level: must be one of debug, info"),
        ("error_threshold: -2\n", "error_threshold: must be a whole number >= -1"),
        ("output_file_name: ../x.csv\n", "output_file_name: must be a plain file name"),
        (
            "resources: {instance_count: two}\n",
            "instance_count: must be a whole number",
        ),
        ("model: azureml:my-model:1\n", "model: 'azureml:my-model:1' is a registered"),
        ("[1, 2]\n", "a deployment must be a YAML mapping"),
        ("a: [\n", "is not valid YAML"),
    ],
)
def test_it_refuses_bad_fields_naming_them(tmp_path, code, text, message):
    base = "code_configuration: {code: code, scoring_script: score.py}\n"
    base += "environment: {python_requirements: []}\n"
    path = write(tmp_path, text if text.startswith(("[", "a:")) else base + text)

    with pytest.raises(SpecError) as raised:
        load_deployment(path)

    assert message in str(raised.value)


def test_unknown_field_suggests_the_close_name(tmp_path, code):
    path = write(tmp_path, "max_concurency_per_instance: 2\n")

    with pytest.raises(SpecError, match="did you mean max_concurrency_per_instance"):
        load_deployment(path)


def test_a_missing_scoring_script_is_named(tmp_path, code):
    path = write(
        tmp_path,
        "code_configuration: {code: code, scoring_script: nope.py}\n"
        "environment: {python_requirements: []}\n",
    )

    with pytest.raises(SpecError, match="scoring_script: nope.py not found"):
        load_deployment(path)


def test_overrides_are_validated_like_the_file(tmp_path, code):
    spec = load_deployment(
        write(
            tmp_path,
            yaml.safe_dump(
                {
                    "code_configuration": {
                        "code": "code",
                        "scoring_script": "score.py",
                    },
                    "environment": {"python_requirements": []},
                }
            ),
        )
    )

    changed = apply_overrides(
        spec, parse_assignments(["max_retries=5", "instance_count=2", "timeout=2.5"])
    )

    assert (changed.settings.max_retries, changed.settings.tries) == (5, 5)
    assert changed.settings.instance_count == 2
    assert changed.settings.timeout == 2.5
    with pytest.raises(SpecError, match="timeout: must be a number of seconds"):
        apply_overrides(spec, {"timeout": "soon"})
    with pytest.raises(SpecError, match="expected key=value"):
        parse_assignments(["mini_batch_size"])
