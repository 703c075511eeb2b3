"""Helpers the az ml-style command tests share (no tests of its own).

`run` calls a command as a user types it (string arguments only), as the
cast's owner in workspace `team` unless told otherwise. `azure_example` is
tests/fixtures/azureml copied next to a freshly built MLflow model folder and
CSV files, so relative paths in its YAML files resolve as in Azure.
"""

from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from studio.samples import save_sklearn_model, write_feature_csvs
from tests.conftest import SCRIPTS

AZUREML = Path(__file__).resolve().parent.parent / "fixtures" / "azureml"
DATA_FILES, DATA_ROWS = 4, 10
# A scoring script that takes a while per mini-batch, so a job can be watched.
SLOW_SCRIPT = """\
import time
from pathlib import Path


def init():
    print("slow script ready")


def run(mini_batch):
    time.sleep(0.4)
    return [Path(f).name for f in mini_batch]
"""


def run(*args: str, user: str | None = "owner", workspace: str | None = "team") -> str:
    """A command's stdout; CommandError propagates. None leaves an option out."""
    out = StringIO()
    who = [*(["--user", user] if user is not None else []),
           *(["--workspace", workspace] if workspace is not None else [])]  # fmt: skip
    call_command(*args, *who, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_json(*args: str, **who: str | None) -> Any:
    return json.loads(run(*args, **who))


@pytest.fixture(scope="session")
def mlflow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow model folder for the session: building one takes seconds."""
    return save_sklearn_model(
        tmp_path_factory.mktemp("mlflow") / "model", n_estimators=5
    )


@pytest.fixture
def azure_example(tmp_path: Path, mlflow_model_dir: Path) -> Path:
    """endpoint.yml, deployment.yml, ... with ./model and ./data beside them."""
    folder = tmp_path / "example"
    shutil.copytree(AZUREML, folder)
    shutil.copytree(mlflow_model_dir, folder / "model")
    write_feature_csvs(folder / "data", n_files=DATA_FILES, rows=DATA_ROWS)
    return folder


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def script_example(folder: Path, script: str = "ok.py", **settings: Any) -> Path:
    """A custom model, a code folder holding `script` and a deployment YAML
    (endpoint `texts`, deployment `blue`) using them; returns the YAML's path.

    `script` is a tests/fixtures/scripts file, or "slow.py" (SLOW_SCRIPT).
    """
    write_yaml(folder / "model" / "weights.txt", "1\n")
    code = folder / "code"
    code.mkdir(parents=True)
    if script == "slow.py":
        (code / script).write_text(SLOW_SCRIPT)
    else:
        shutil.copy(SCRIPTS / script, code / script)
    values = {"resource_monitor_interval": 0, "mini_batch_size": 1, **settings}
    lines = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in values.items())
    return write_yaml(
        folder / "deployment.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/"
        "modelBatchDeployment.schema.json\n"
        "name: blue\n"
        "endpoint_name: texts\n"
        "type: model\n"
        "model:\n  path: ./model\n"
        f"code_configuration:\n  code: ./code\n  scoring_script: {script}\n"
        "environment:\n  python_requirements: []\n"
        f"settings:\n{lines}",
    )


def create_script_endpoint(
    folder: Path, script: str = "ok.py", **settings: Any
) -> Path:
    """Endpoint `texts` with deployment `blue` running `script`, made by the CLI."""
    write_yaml(folder / "endpoint.yml", "name: texts\n")
    run("batch-endpoint", "create", "--file", str(folder / "endpoint.yml"))
    deployment = script_example(folder, script, **settings)
    run("batch-deployment", "create", "--file", str(deployment))
    return deployment
