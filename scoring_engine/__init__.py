"""Batch Studio's scoring engine: runs batch scoring jobs, knows no web app."""

from __future__ import annotations

from .config import Settings
from .deployment import (
    DeploymentSpec,
    EnvironmentSpec,
    ModelSpec,
    apply_overrides,
    load_deployment,
    parse_deployment,
)
from .errors import (
    EngineError,
    EnvironmentBuildError,
    InputError,
    JobFolderError,
    ScriptError,
    SpecError,
)
from .orchestrator import JobResult, JobSpec, plan_job, run_job
from .state import Progress

__all__ = [
    "DeploymentSpec",
    "EngineError",
    "EnvironmentBuildError",
    "EnvironmentSpec",
    "InputError",
    "JobFolderError",
    "JobResult",
    "JobSpec",
    "ModelSpec",
    "Progress",
    "ScriptError",
    "Settings",
    "SpecError",
    "apply_overrides",
    "load_deployment",
    "parse_deployment",
    "plan_job",
    "run_job",
]
