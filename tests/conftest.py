"""Shared fixtures: engine jobs run through the real command line on real files."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "fixtures" / "scripts"


@dataclass
class CliRun:
    """What a user sees after `python -m scoring_engine run`."""

    returncode: int
    stdout: str
    stderr: str
    job_dir: Path

    def read(self, relative: str) -> str:
        return (self.job_dir / relative).read_text()

    def output_lines(self, name: str = "predictions.csv") -> list[str]:
        return self.read(f"outputs/{name}").splitlines()


def write_deployment(folder: Path, script: str | None, **fields: object) -> Path:
    """A deployment YAML in Azure's older shape using a fixture script."""
    folder.mkdir(parents=True, exist_ok=True)
    spec: dict[str, object] = {"name": "test-deployment"}
    if script:
        spec["code_configuration"] = {"code": str(SCRIPTS), "scoring_script": script}
        spec["environment"] = {"python_requirements": []}
    spec.update({"resource_monitor_interval": 0, **fields})
    path = folder / "deployment.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_text_files(folder: Path, count: int, prefix: str = "file") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"{prefix}_{number:03d}.txt"
        path.write_text(f"item {number}\n")
        paths.append(path)
    return paths


def run_cli(
    deployment: Path,
    input_path: Path,
    job_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> CliRun:
    completed = subprocess.run(
        [
            sys.executable, "-m", "scoring_engine", "run",
            "--deployment", str(deployment),
            "--input", str(input_path),
            "--job-dir", str(job_dir),
            "--node-name", "node-a",
            *args,
        ],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )  # fmt: skip
    return CliRun(completed.returncode, completed.stdout, completed.stderr, job_dir)


@pytest.fixture
def text_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    write_text_files(folder, 12)
    return folder
