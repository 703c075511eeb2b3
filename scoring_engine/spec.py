"""What a job is: its spec, its mini-batches, the command its scoring processes run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .agent import ScoringCommand
from .config import Settings
from .deployment import DeploymentSpec
from .environments import prepare_python
from .errors import EngineError
from .jobfolder import JobFolder, LogFile
from .partition import MiniBatch, list_input_files, partition_files, partition_tabular

BUILTIN_SCORER = Path(__file__).with_name("mlflow_scorer.py")
INPUT_MODES = ("files", "tabular")


@dataclass(frozen=True)
class JobSpec:
    """Everything one job needs; paths and node name arrive explicitly."""

    name: str
    deployment: DeploymentSpec
    input_path: Path
    job_dir: Path
    node: str
    env_cache: Path
    input_mode: str = "files"
    input_glob: str | None = None

    @property
    def settings(self) -> Settings:
        return self.deployment.settings


def plan_job(spec: JobSpec) -> list[MiniBatch]:
    """Resolve and partition the input; raises before anything is created.

    The listing is sorted, so every node that plans the same input gets the
    same mini-batches in the same order.
    """
    if spec.input_mode not in INPUT_MODES:
        raise EngineError(
            f"input type must be one of {', '.join(INPUT_MODES)},"
            f" not {spec.input_mode!r}"
        )
    files = list_input_files(spec.input_path, spec.input_glob)
    if spec.input_mode == "tabular":
        return partition_tabular(files, spec.settings.mini_batch_size)
    return partition_files(files, spec.settings.mini_batch_size)


def scoring_command(
    spec: JobSpec,
    folder: JobFolder,
    driver: LogFile,
    beat: Callable[[], None] = lambda: None,
    every_s: float = 1.0,
) -> ScoringCommand:
    """The environment's Python (built once per requirements) and the script to run.

    A build can take minutes: it runs in a thread while this one calls
    `beat` every `every_s`, so the caller's heartbeat (and its database
    connection, which belongs to this thread) stays alive. Raises
    EnvironmentBuildError when the environment cannot be built.
    """
    built: list[ScoringCommand] = []
    failed: list[BaseException] = []

    def build() -> None:
        try:
            built.append(_scoring_command(spec, folder, driver))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            failed.append(exc)

    builder = threading.Thread(target=build, name="environment-build", daemon=True)
    builder.start()
    while True:
        builder.join(every_s)
        if not builder.is_alive():
            break
        beat()
    if failed:
        raise failed[0]
    return built[0]


def _scoring_command(
    spec: JobSpec, folder: JobFolder, driver: LogFile
) -> ScoringCommand:
    deployment = spec.deployment
    requirements = (
        deployment.environment.python_requirements if deployment.environment else ()
    )
    python = prepare_python(requirements, spec.env_cache, folder.environment_log)
    driver.write(f"Scoring processes on node {spec.node} run {python}")
    if deployment.uses_builtin_scorer:
        script, code_dir = BUILTIN_SCORER, None
    else:
        code_dir = deployment.code_dir
        script = code_dir / deployment.scoring_script  # type: ignore[operator]
    return ScoringCommand(
        python=python,
        script=script,
        code_dir=code_dir,
        model_dir=deployment.model.path if deployment.model else None,
        settings=spec.settings,
        script_args=script_arguments(spec.settings),
    )


def script_arguments(settings: Settings) -> tuple[str, ...]:
    """The job's settings as the scoring script's command line, Azure style."""
    return (
        "--logging_level", settings.logging_level,
        "--mini_batch_size", str(settings.mini_batch_size),
        "--output_action", settings.output_action,
        "--output_file_name", settings.output_file_name,
        "--error_threshold", str(settings.error_threshold),
        "--max_retries", str(settings.max_retries),
        "--timeout", f"{settings.timeout:g}",
        "--instance_count", str(settings.instance_count),
        "--max_concurrency_per_instance", str(settings.max_concurrency_per_instance),
    )  # fmt: skip
