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
from .instance import run_instance
from .orchestrator import JobResult, LedgerFactory, run_job
from .spec import JobSpec, plan_job
from .state import BatchState, Claim, MiniBatchLedger, Progress

__all__ = [
    "BatchState",
    "Claim",
    "DeploymentSpec",
    "EngineError",
    "EnvironmentBuildError",
    "EnvironmentSpec",
    "InputError",
    "JobFolderError",
    "JobResult",
    "JobSpec",
    "LedgerFactory",
    "MiniBatchLedger",
    "ModelSpec",
    "Progress",
    "ScriptError",
    "Settings",
    "SpecError",
    "apply_overrides",
    "load_deployment",
    "parse_deployment",
    "plan_job",
    "run_instance",
    "run_job",
]
