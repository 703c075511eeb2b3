"""The studio's database models, one module per resource."""

from __future__ import annotations

from .assets import DataAsset, Environment, ModelAsset
from .compute import Node
from .endpoints import BatchDeployment, BatchEndpoint, EndpointState
from .jobs import Job, JobStatus
from .runs import JobRun, RunBatch, RunInstance
from .tokens import ApiToken
from .workspace import Membership, Role, Workspace

__all__ = [
    "ApiToken",
    "BatchDeployment",
    "BatchEndpoint",
    "DataAsset",
    "EndpointState",
    "Environment",
    "Job",
    "JobRun",
    "JobStatus",
    "Membership",
    "ModelAsset",
    "Node",
    "Role",
    "RunBatch",
    "RunInstance",
    "Workspace",
]
