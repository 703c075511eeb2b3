"""REST API viewsets: resolve through access.py, validate, call one service.

Every route below /api/workspaces/<workspace>/ resolves the workspace with
access.get_workspace_for_user (readers read, contributors and owners write,
outsiders get 404), so the API and the browser enforce the same roles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from .. import access, jobfiles
from ..models import (
    BatchDeployment,
    BatchEndpoint,
    DataAsset,
    Environment,
    Job,
    Membership,
    ModelAsset,
    Role,
    Workspace,
)
from ..services import assets
from ..services.endpoints import (
    create_deployment,
    create_endpoint,
    delete_endpoint,
    set_default_deployment,
)
from ..services.invoke import invoke
from ..services.jobs import cancel_job, job_status, resume_job
from . import serializers as s
from .errors import with_close_names

# The most entries a job folder listing returns (as the Outputs + logs tab).
FILES_LIMIT = 2000


class InWorkspace:
    """The URL's workspace, through access.py, with the role the method needs."""

    request: Request
    kwargs: dict[str, Any]
    workspace: Workspace

    def role(self) -> str:
        return Role.READER if self.request.method in SAFE_METHODS else Role.CONTRIBUTOR

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """After authentication: membership and role, before reading any input."""
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.workspace = access.get_workspace_for_user(
            request.user, kwargs["workspace"], self.role()
        )

    def find(self, getter: Callable[..., Any], model: type[Model], name: str) -> Any:
        """`getter` (an access.get_*_for_user) with close names on a miss."""
        try:
            return getter(self.request.user, self.workspace.name, name, self.role())
        except Http404 as exc:
            names = model.objects.filter(workspace=self.workspace).values_list("name")
            raise with_close_names(exc, name, names) from None

    def validated(self, serializer_class: type[serializers.Serializer]) -> Any:
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def respond(self, instance: Any, code: int = status.HTTP_200_OK,
                serializer_class: type | None = None) -> Response:  # fmt: skip
        serializer_class = serializer_class or self.get_serializer_class()
        data = serializer_class(instance, context=self.get_serializer_context()).data
        headers = {"Location": data["url"]} if code != status.HTTP_200_OK else {}
        return Response(data, status=code, headers=headers)


# -- workspaces


@extend_schema(tags=["workspaces"])
class WorkspaceViewSet(viewsets.ReadOnlyModelViewSet):
    """The workspaces you are a member of, with your role in each."""

    queryset = Workspace.objects.all()
    serializer_class = s.WorkspaceSerializer
    lookup_field = "name"
    lookup_value_regex = s.WORKSPACE_NAME

    def get_queryset(self) -> QuerySet[Workspace]:
        user = self.request.user
        role = Membership.objects.filter(workspace=OuterRef("pk"), user=user)
        return (
            super()
            .get_queryset()
            .for_user(user)
            .annotate(role=Subquery(role.values("role")[:1]))
        )

    def get_object(self) -> Workspace:
        return access.get_workspace_for_user(self.request.user, self.kwargs["name"])


# -- models, data, environments

VERSION = OpenApiParameter("version", OpenApiTypes.INT, OpenApiParameter.PATH)


class _AssetViewSet(InWorkspace, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The newest version of each name; a name's versions; register a new one."""

    lookup_field = "name"
    lookup_value_regex = s.ASSET_NAME
    kind: str  # as DESIGN and access.py name it: "model", "data asset", ...
    create_serializer: type[serializers.Serializer]
    register: Callable[..., Any]

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset.none()
        if self.action == "list":
            rows = assets.latest_versions(self.queryset.model, self.workspace)
        else:
            rows = self.queryset.filter(workspace=self.workspace).order_by("-version")
        return rows.select_related("workspace", "created_by")

    def create(self, request: Request, workspace: str) -> Response:
        data = self.validated(self.create_serializer)
        asset = self.register(self.workspace, request.user, **data)
        return self.respond(asset, status.HTTP_201_CREATED)

    def retrieve(self, request: Request, workspace: str, name: str) -> Response:
        """The newest version of `name`."""
        return self.respond(self._named(name).first() or self._missing(name))

    @action(detail=True)
    def versions(self, request: Request, workspace: str, name: str) -> Response:
        """Every version of `name`, newest first."""
        page = self.paginate_queryset(self._named(name)) or self._missing(name)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(parameters=[VERSION])
    @action(detail=True, url_path=r"versions/(?P<version>[0-9]{1,9})")
    def version(self, request: Request, workspace: str, name: str,
                version: str) -> Response:  # fmt: skip
        """One version of `name`."""
        found = self._named(name).filter(version=int(version)).first()
        return self.respond(found or self._missing(f"{name}:{int(version)}"))

    def _named(self, name: str) -> QuerySet:
        return self.get_queryset().filter(name=name)

    def _missing(self, name: str) -> Any:
        missing = Http404(
            f"{self.kind} '{name}' not found in workspace '{self.workspace.name}'"
        )
        names = self.queryset.filter(workspace=self.workspace).values_list("name")
        raise with_close_names(missing, name.split(":")[0], names)


def _asset_schema(create: type, shape: type, tag: str) -> Callable[[type], type]:
    return extend_schema_view(
        list=extend_schema(tags=[tag]),
        retrieve=extend_schema(tags=[tag]),
        version=extend_schema(tags=[tag]),
        create=extend_schema(request=create, responses={201: shape}, tags=[tag]),
        versions=extend_schema(responses=shape(many=True), tags=[tag]),
    )


@_asset_schema(s.ModelRegisterSerializer, s.ModelAssetSerializer, "models")
class ModelViewSet(_AssetViewSet):
    queryset = ModelAsset.objects.all()
    serializer_class = s.ModelAssetSerializer
    create_serializer = s.ModelRegisterSerializer
    kind = "model"
    register = staticmethod(assets.register_model)


@_asset_schema(s.DataRegisterSerializer, s.DataAssetSerializer, "data")
class DataViewSet(_AssetViewSet):
    queryset = DataAsset.objects.all()
    serializer_class = s.DataAssetSerializer
    create_serializer = s.DataRegisterSerializer
    kind = "data asset"
    register = staticmethod(assets.register_data)


@_asset_schema(s.EnvironmentCreateSerializer, s.EnvironmentSerializer, "environments")
class EnvironmentViewSet(_AssetViewSet):
    queryset = Environment.objects.all()
    serializer_class = s.EnvironmentSerializer
    create_serializer = s.EnvironmentCreateSerializer
    kind = "environment"
    register = staticmethod(assets.create_environment)


# -- endpoints and deployments


@extend_schema(tags=["endpoints"])
class EndpointViewSet(InWorkspace, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Batch endpoints; invoke one, pick its default deployment, delete it."""

    queryset = BatchEndpoint.objects.select_related("workspace", "created_by")
    serializer_class = s.EndpointSerializer
    lookup_field = "name"
    lookup_value_regex = s.ENDPOINT_NAME

    def get_queryset(self) -> QuerySet[BatchEndpoint]:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset.none()
        return self.queryset.filter(workspace=self.workspace)

    def get_object(self) -> BatchEndpoint:
        return self.find(
            access.get_endpoint_for_user, BatchEndpoint, self.kwargs["name"]
        )

    @extend_schema(
        request=s.EndpointCreateSerializer, responses={201: s.EndpointSerializer}
    )
    def create(self, request: Request, workspace: str) -> Response:
        data = self.validated(s.EndpointCreateSerializer)
        endpoint = create_endpoint(self.workspace, request.user, **data)
        return self.respond(endpoint, status.HTTP_201_CREATED)

    def retrieve(self, request: Request, workspace: str, name: str) -> Response:
        return self.respond(self.get_object())

    @extend_schema(responses={202: s.EndpointSerializer})
    def destroy(self, request: Request, workspace: str, name: str) -> Response:
        """Mark the endpoint deleting (202); its name is free once it is gone."""
        endpoint = self.get_object()
        delete_endpoint(endpoint)
        return self.respond(endpoint, status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.InvokeSerializer, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def invoke(self, request: Request, workspace: str, name: str) -> Response:
        """Start a job at once; 202 with its name and links (progress, page)."""
        endpoint = self.get_object()
        job = invoke(endpoint, request.user, **self.validated(s.InvokeSerializer))
        return self.respond(job, status.HTTP_202_ACCEPTED, s.JobSerializer)

    @extend_schema(
        request=s.SetDefaultSerializer, responses={200: s.EndpointSerializer}
    )
    @action(detail=True, methods=["post"])
    def default(self, request: Request, workspace: str, name: str) -> Response:
        """Make a deployment the one an invocation without deployment_name uses."""
        endpoint = self.get_object()
        data = self.validated(s.SetDefaultSerializer)
        set_default_deployment(endpoint, data["default_deployment"])
        return self.respond(endpoint)


REVISION = OpenApiParameter("revision", OpenApiTypes.INT, OpenApiParameter.PATH)


@extend_schema(tags=["deployments"])
class DeploymentViewSet(InWorkspace, mixins.ListModelMixin, viewsets.GenericViewSet):
    """An endpoint's deployment revisions; creating one adds the next revision."""

    queryset = BatchDeployment.objects.select_related(
        "endpoint__workspace", "model", "environment", "created_by"
    )
    serializer_class = s.DeploymentSerializer
    lookup_field = "name"
    lookup_value_regex = s.ENDPOINT_NAME

    @cached_property
    def endpoint(self) -> BatchEndpoint:
        return self.find(
            access.get_endpoint_for_user, BatchEndpoint, self.kwargs["endpoint"]
        )

    def get_queryset(self) -> QuerySet[BatchDeployment]:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset.none()
        return self.queryset.filter(endpoint=self.endpoint).order_by(
            "name", "-revision"
        )

    @extend_schema(
        request=s.DeploymentCreateSerializer, responses={201: s.DeploymentSerializer}
    )
    def create(self, request: Request, workspace: str, endpoint: str) -> Response:
        data = self.validated(s.DeploymentCreateSerializer)
        deployment = create_deployment(self.endpoint, request.user, **data)
        return self.respond(deployment, status.HTTP_201_CREATED)

    def retrieve(self, request: Request, workspace: str, endpoint: str,
                 name: str) -> Response:  # fmt: skip
        """The current (newest) revision of deployment `name`."""
        return self.respond(self._revision(name))

    @extend_schema(parameters=[REVISION])
    @action(detail=True, url_path=r"revisions/(?P<revision>[0-9]{1,9})")
    def revision(self, request: Request, workspace: str, endpoint: str, name: str,
                 revision: str) -> Response:  # fmt: skip
        return self.respond(self._revision(name, int(revision)))

    def _revision(self, name: str, revision: int | None = None) -> BatchDeployment:
        rows = self.get_queryset().filter(name=name)
        found = rows.filter(revision=revision).first() if revision else rows.first()
        if found is None:
            which = f" revision {revision}" if revision else ""
            missing = Http404(f"batch deployment '{name}'{which} not found on"
                              f" endpoint '{self.endpoint.name}'")  # fmt: skip
            names = self.queryset.filter(endpoint=self.endpoint).values_list("name")
            raise with_close_names(missing, name, names)
        return found


# -- jobs


@extend_schema(tags=["jobs"])
@extend_schema_view(list=extend_schema(parameters=[s.JobFilterSerializer]))
class JobViewSet(InWorkspace, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Jobs of the workspace, newest first; filter with ?status= and ?endpoint=."""

    queryset = Job.objects.select_related("workspace", "created_by")
    serializer_class = s.JobSerializer
    lookup_field = "name"
    lookup_value_regex = s.JOB_NAME

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset.none()
        filters = s.JobFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = {
            {"endpoint": "endpoint_name"}.get(key, key): value
            for key, value in filters.validated_data.items()
        }
        return self.queryset.for_workspace(self.workspace).filter(**wanted)

    def get_object(self) -> Job:
        return self.find(access.get_job_for_user, Job, self.kwargs["name"])

    def retrieve(self, request: Request, workspace: str, name: str) -> Response:
        return self.respond(self.get_object())

    @extend_schema(request=None, responses={200: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, workspace: str, name: str) -> Response:
        """Cancel a queued job at once, or ask a running one to stop (409 if ended)."""
        job = self.get_object()
        cancel_job(job)
        return self.respond(job)

    @extend_schema(request=s.ResumeSerializer, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, workspace: str, name: str) -> Response:
        """Queue a failed or canceled job again from its checkpoint (409 if none).

        Only the mini-batches it had not committed run; `overrides` may change
        thresholds, retries and timeout, not mini_batch_size.
        """
        job = self.get_object()
        resume_job(job, **self.validated(s.ResumeSerializer))
        return self.respond(job, status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: s.JobProgressSerializer})
    @action(detail=True)
    def progress(self, request: Request, workspace: str, name: str) -> Response:
        """Status, counts, percent, ETA and the cause on failure (poll this)."""
        return Response(job_status(self.get_object()))

    @extend_schema(responses={200: s.JobFilesSerializer})
    @action(detail=True)
    def files(self, request: Request, workspace: str, name: str) -> Response:
        """The job folder's files and folders, depth first, at most FILES_LIMIT."""
        entries = jobfiles.tree(Path(self.get_object().job_dir), FILES_LIMIT + 1)
        return Response(
            {
                "entries": [asdict(entry) for entry in entries[:FILES_LIMIT]],
                "truncated": len(entries) > FILES_LIMIT,
            }
        )

    @extend_schema(
        parameters=[s.LogQuerySerializer], responses={200: s.LogChunkSerializer}
    )
    @action(detail=True)
    def log(self, request: Request, workspace: str, name: str) -> Response:
        """Whole lines of a job-folder file from byte `offset`; poll with `end`."""
        job = self.get_object()
        query = s.LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            chunk = jobfiles.tail(Path(job.job_dir), **query.validated_data)
        except OSError as exc:
            raise exceptions.NotFound(_file_problem(exc)) from None
        fields = ("text", "start", "end", "size")
        return Response(
            {"path": request.query_params["path"]}
            | {field: getattr(chunk, field) for field in fields}
        )


def _file_problem(exc: OSError) -> str:
    """jobfiles' own message; never the system's, which may name real paths."""
    if exc.filename is None and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return "that file cannot be read from the job folder"
