"""No-code MLflow deployments and built scoring environments, through the real CLI."""

from __future__ import annotations

import pandas as pd
import yaml

from studio.samples import save_sklearn_model, write_feature_csvs
from tests.conftest import run_cli
from tests.factories import make_wheel


def test_an_mlflow_model_scores_csv_files_without_code(tmp_path):
    model_dir = save_sklearn_model(tmp_path / "model", n_estimators=5)
    inputs = tmp_path / "inputs"
    files = write_feature_csvs(inputs, n_files=5, rows=20)
    deployment = tmp_path / "deployment.yml"
    deployment.write_text(
        yaml.safe_dump(
            {
                "model": {"path": "model"},
                "mini_batch_size": 2,
                "max_concurrency_per_instance": 2,
                "resource_monitor_interval": 0,
            }
        )
    )

    run = run_cli(
        deployment,
        inputs,
        tmp_path / "job",
        env={"MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri()},
    )

    assert run.returncode == 0, run.stderr
    assert "items 5 succeeded, 0 failed" in run.stdout
    output = pd.read_csv(run.job_dir / "outputs/predictions.csv")
    assert list(output.columns) == ["row", "prediction", "file_name"]
    assert list(output["file_name"].unique()) == [f.name for f in files]
    assert list(output["row"]) == list(range(20)) * 5
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(str(model_dir))
    features = pd.concat(pd.read_csv(f) for f in files).astype(float)
    assert list(output["prediction"]) == list(model.predict(features))


def test_a_deployment_environment_is_built_and_used(tmp_path, text_inputs):
    wheel = make_wheel(tmp_path / "wheels", "studio_extra", value="from the venv")
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(
        "import sys\nimport studio_extra\n\n\ndef init():\n    pass\n\n\n"
        "def run(mini_batch):\n"
        "    return [f'{studio_extra.VALUE} {sys.prefix}' for _ in mini_batch]\n"
    )
    deployment = tmp_path / "deployment.yml"
    deployment.write_text(
        yaml.safe_dump(
            {
                "code_configuration": {"code": "code", "scoring_script": "score.py"},
                "environment": {"python_requirements": [f"./wheels/{wheel.name}"]},
                "resource_monitor_interval": 0,
            }
        )
    )
    env = {
        "BATCH_STUDIO_ENV_CACHE": str(tmp_path / "envs"),
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_OFFLINE": "1",
    }

    run = run_cli(deployment, text_inputs, tmp_path / "job", env=env)

    assert run.returncode == 0, run.stderr
    lines = run.output_lines()
    assert len(lines) == 12
    assert all(line.startswith(f"from the venv {tmp_path / 'envs'}") for line in lines)
    assert "studio_extra" in run.read("logs/sys/environment_build.txt")


def test_a_failing_environment_build_fails_the_job_with_its_log(tmp_path, text_inputs):
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(
        "def init():\n    pass\n\n\ndef run(b):\n    return b\n"
    )
    deployment = tmp_path / "deployment.yml"
    deployment.write_text(
        yaml.safe_dump(
            {
                "code_configuration": {"code": "code", "scoring_script": "score.py"},
                "environment": {"python_requirements": ["no-such-package-xyz==1.0"]},
            }
        )
    )
    env = {
        "BATCH_STUDIO_ENV_CACHE": str(tmp_path / "envs"),
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_OFFLINE": "1",
    }

    run = run_cli(deployment, text_inputs, tmp_path / "job", env=env)

    assert run.returncode == 1
    assert "building the scoring environment failed" in run.stdout
    overview = run.read("logs/job_progress_overview.txt")
    assert "Look at: logs/sys/environment_build.txt" in overview
    assert "no-such-package-xyz" in run.read("logs/sys/environment_build.txt")
