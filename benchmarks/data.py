"""Cached benchmark inputs under benchmarks/.data: the MLflow model and input files."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"
INPUTS_DIR = DATA_DIR / "inputs"
MODELS_DIR = DATA_DIR / "models"
RUNS_DIR = DATA_DIR / "runs"
ENV_CACHE = DATA_DIR / "environments"
TRACKING_DIR = DATA_DIR / "mlruns"
# Bump when a generator changes what it writes, so caches are rebuilt.
GENERATOR_VERSION = 1


def use_private_tracking() -> None:
    """Point MLflow at a file store under .data (scoring processes inherit it)."""
    TRACKING_DIR.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = TRACKING_DIR.as_uri()


def forest_model(n_estimators: int = 100) -> Path:
    """A RandomForest classifier saved as an MLflow model (studio.samples)."""

    def build(target: Path) -> None:
        from studio.samples import save_sklearn_model

        save_sklearn_model(target, n_estimators=n_estimators)

    return _cached(
        MODELS_DIR / f"forest-{n_estimators}", {"trees": n_estimators}, build
    )


def feature_csvs(n_files: int, rows: int) -> Path:
    """A folder of n_files CSVs of `rows` rows with the model's columns f0..f3."""

    def build(target: Path) -> None:
        from studio.samples import write_feature_csvs

        write_feature_csvs(target, n_files, rows)

    params = {"files": n_files, "rows": rows}
    return _cached(INPUTS_DIR / f"features-{n_files}x{rows}", params, build)


def tiny_files(n_files: int) -> Path:
    """A folder of n_files one-line text files."""

    def build(target: Path) -> None:
        target.mkdir(parents=True)
        for number in range(n_files):
            (target / f"item_{number:05d}.txt").write_text(f"item {number}\n")

    return _cached(INPUTS_DIR / f"tiny-{n_files}", {"files": n_files}, build)


def _cached(
    target: Path, params: dict[str, int], build: Callable[[Path], None]
) -> Path:
    """Build `target` once: into a temporary sibling, renamed, then a stamp file."""
    stamp = target.with_name(target.name + ".json")
    wanted = json.dumps({**params, "version": GENERATOR_VERSION}, sort_keys=True)
    if target.is_dir() and stamp.is_file() and stamp.read_text() == wanted:
        return target
    started = time.perf_counter()
    print(f"  generating {target.relative_to(BENCH_DIR)} ...", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    building = target.with_name(f"{target.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    build(building)
    building.rename(target)
    stamp.write_text(wanted)
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    return target
