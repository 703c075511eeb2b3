"""The ready demo: a sample MLflow model, sample data, and one finished job to open."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from scoring_engine import JobSpec, load_deployment, run_job
from scoring_engine.__main__ import default_env_cache
from scoring_engine.node import node_name
from studio.samples import save_sklearn_model, write_feature_csvs

DEMO_FILES = 20
DEMO_ROWS = 500


def prepare_assets(root: Path) -> tuple[Path, Path]:
    """Make (once) the demo model, input files and deployment YAML under `root`."""
    model_dir, inputs = root / "model", root / "data"
    if not (model_dir / "MLmodel").exists():
        print(f"Training the sample MLflow model into {model_dir} ...")
        save_sklearn_model(model_dir, n_estimators=50)
    if not inputs.exists():
        write_feature_csvs(inputs, n_files=DEMO_FILES, rows=DEMO_ROWS)
    deployment = root / "deployment.yml"
    deployment.write_text(
        yaml.safe_dump(
            {
                "name": "demo-classifier",
                "endpoint_name": "demo",
                "model": {"path": "model", "type": "mlflow_model"},
                "resources": {"instance_count": 1},
                "settings": {
                    "max_concurrency_per_instance": 2,
                    "mini_batch_size": 5,
                    "output_action": "append_row",
                    "output_file_name": "predictions.csv",
                    "resource_monitor_interval": 1,
                },
            },
            sort_keys=False,
        )
    )
    return deployment, inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.demo")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    root = (args.data_dir or Path(os.environ.get("STUDIO_DATA_DIR", "var"))) / "demo"
    os.environ.setdefault("MLFLOW_TRACKING_URI", (root / "mlruns").resolve().as_uri())
    deployment, inputs = prepare_assets(root)
    name = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    spec = JobSpec(
        name=name,
        deployment=load_deployment(deployment),
        input_path=inputs,
        job_dir=root / "jobs" / name,
        node=node_name(),
        env_cache=default_env_cache(),
    )
    print(f"Scoring {DEMO_FILES} files x {DEMO_ROWS} rows with 2 scoring processes ...")
    result = run_job(spec)
    print(result.summary_line())
    print(f"Job folder:  {result.job_dir}")
    print(f"Predictions: {result.output_path}")
    print(f"Progress:    {result.job_dir / 'logs' / 'job_progress_overview.txt'}")
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
