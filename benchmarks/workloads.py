"""The benchmark workloads: inputs, deployment and scoring script of each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import data

SCRIPTS_DIR = data.BENCH_DIR / "scripts"
BUILTIN_SCORER = data.REPO / "scoring_engine" / "mlflow_scorer.py"
# Engine settings shared by every workload: 2 scoring processes on one node.
ENGINE_SETTINGS: dict[str, Any] = {
    "mini_batch_size": 10,
    "max_concurrency_per_instance": 2,
    "resource_monitor_interval": 0,
}
WORKERS = 2


@dataclass(frozen=True)
class Prepared:
    """A workload's materialized inputs: what both contenders score."""

    input_dir: Path
    script: Path
    model_dir: Path | None
    deployment: dict[str, Any]


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    n_files: int
    rows_per_file: int
    prepare: Callable[[], Prepared]

    @property
    def rows(self) -> int:
        return self.n_files * self.rows_per_file


def _mlflow(n_files: int) -> Callable[[], Prepared]:
    def prepare() -> Prepared:
        model = data.forest_model(100)
        inputs = data.feature_csvs(n_files, 1000)
        deployment = {
            "name": "bench-mlflow",
            "model": {"path": str(model), "type": "mlflow_model"},
            **ENGINE_SETTINGS,
        }
        return Prepared(inputs, BUILTIN_SCORER, model, deployment)

    return prepare


def _sleep(n_files: int) -> Callable[[], Prepared]:
    def prepare() -> Prepared:
        inputs = data.tiny_files(n_files)
        deployment = {
            "name": "bench-sleep",
            "code_configuration": {
                "code": str(SCRIPTS_DIR),
                "scoring_script": "sleep_score.py",
            },
            "environment": {"python_requirements": []},
            **ENGINE_SETTINGS,
        }
        return Prepared(inputs, SCRIPTS_DIR / "sleep_score.py", None, deployment)

    return prepare


WORKLOADS = {
    w.name: w
    for w in (
        Workload(
            "mlflow-200",
            "100-tree RandomForest MLflow model, 200 CSV files x 1,000 rows",
            200,
            1000,
            _mlflow(200),
        ),
        Workload(
            "mlflow-2000",
            "100-tree RandomForest MLflow model, 2,000 CSV files x 1,000 rows",
            2000,
            1000,
            _mlflow(2000),
        ),
        Workload(
            "sleep-400",
            "script sleeping 10 ms per file, 400 tiny files (1 row each)",
            400,
            1,
            _sleep(400),
        ),
    )
}
