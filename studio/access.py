"""The only permission gate: lookups for a user, with the role an action needs."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import (
    BatchEndpoint,
    DataAsset,
    Environment,
    Job,
    Membership,
    ModelAsset,
    Role,
    Workspace,
)

User = AbstractBaseUser | AnonymousUser


def get_membership(user: User, workspace_name: str) -> Membership:
    """The user's membership; 404 for non-members, so outsiders learn nothing."""
    if not user.is_authenticated:
        raise Http404("workspace not found")
    membership = (
        Membership.objects.select_related("workspace")
        .filter(user=user, workspace__name=workspace_name)
        .first()
    )
    if membership is None:
        raise Http404(f"workspace '{workspace_name}' not found")
    return membership


def get_workspace_for_user(
    user: User, workspace_name: str, role: str = Role.READER
) -> Workspace:
    """The workspace, if the user holds at least `role` in it.

    Raises Http404 for outsiders, PermissionDenied for too small a role.
    """
    membership = get_membership(user, workspace_name)
    require_role(membership, role)
    workspace = membership.workspace
    workspace.role = membership.role  # type: ignore[attr-defined]
    return workspace


def require_role(membership: Membership, role: str) -> None:
    if Role.rank(membership.role) < Role.rank(role):
        raise PermissionDenied(
            f"this needs the {role} role in workspace"
            f" '{membership.workspace.name}'; you are {membership.role}"
        )


def can(workspace: Workspace, role: str) -> bool:
    """Whether the current user (as loaded by get_workspace_for_user) holds `role`."""
    return Role.rank(workspace.role) >= Role.rank(role)  # type: ignore[attr-defined]


def get_model_for_user(
    user: User, workspace_name: str, name: str, version: int, role: str = Role.READER
) -> ModelAsset:
    workspace = get_workspace_for_user(user, workspace_name, role)
    return _get(ModelAsset, "model", workspace, name=name, version=version)


def get_data_for_user(
    user: User, workspace_name: str, name: str, version: int, role: str = Role.READER
) -> DataAsset:
    workspace = get_workspace_for_user(user, workspace_name, role)
    return _get(DataAsset, "data asset", workspace, name=name, version=version)


def get_environment_for_user(
    user: User, workspace_name: str, name: str, version: int, role: str = Role.READER
) -> Environment:
    workspace = get_workspace_for_user(user, workspace_name, role)
    return _get(Environment, "environment", workspace, name=name, version=version)


def get_endpoint_for_user(
    user: User, workspace_name: str, name: str, role: str = Role.READER
) -> BatchEndpoint:
    workspace = get_workspace_for_user(user, workspace_name, role)
    return _get(BatchEndpoint, "batch endpoint", workspace, name=name)


def get_job_for_user(
    user: User, workspace_name: str, name: str, role: str = Role.READER
) -> Job:
    workspace = get_workspace_for_user(user, workspace_name, role)
    return _get(Job, "job", workspace, name=name)


def _get(model: type, kind: str, workspace: Workspace, **lookup: object):  # noqa: ANN202
    found = model.objects.filter(workspace=workspace, **lookup).first()
    if found is None:
        label = lookup.get("name", "")
        raise Http404(f"{kind} '{label}' not found in workspace '{workspace.name}'")
    found.workspace = workspace
    return found
