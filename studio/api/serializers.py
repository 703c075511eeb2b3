"""Shapes of the REST API: what each resource looks like and what each write takes.

Input serializers name their fields after the service's keyword arguments
(through `source`), so a view passes `validated_data` straight to the service,
and a service's ValidationError keyed by field lands on the same name.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.reverse import reverse

from .. import jobfiles
from ..models import (
    BatchDeployment,
    BatchEndpoint,
    DataAsset,
    Environment,
    Job,
    JobStatus,
    ModelAsset,
    Workspace,
)
from ..services.assets import NAME_RE
from ..services.endpoints import ENDPOINT_NAME_RE
from ..services.invoke import JOB_NAME_RE
from .fields import (
    JSONObjectField,
    TagsField,
    files_field,
    name_field,
    names_field,
    text_field,
)

# Path parameters: what each kind of name may hold (the services' rules), so a
# malformed name never reaches a query.
WORKSPACE_NAME = r"[-a-zA-Z0-9_]+"
ASSET_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
ENDPOINT_NAME = r"[A-Za-z][A-Za-z0-9-]*"
JOB_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"
# Most bytes of a log one request returns.
LOG_LIMIT_MAX = 1024 * 1024


def _api_url(serializer: serializers.Serializer, name: str, *args: Any) -> str:
    return reverse(f"api:{name}", args=args, request=serializer.context.get("request"))


def _page_url(serializer: serializers.Serializer, path: str) -> str:
    request = serializer.context.get("request")
    return request.build_absolute_uri(path) if request else path


# -- workspaces and assets


class WorkspaceSerializer(serializers.ModelSerializer):
    role = serializers.CharField(read_only=True, help_text="Your role here.")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["name", "description", "role", "created_at", "url"]

    def get_url(self, workspace: Workspace) -> str:
        return _api_url(self, "workspace-detail", workspace.name)


class _AssetSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    version_count = serializers.IntegerField(
        read_only=True, required=False, help_text="In lists: versions of this name."
    )
    url = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField(help_text="The studio's page.")
    route = ""

    def get_url(self, asset: Any) -> str:
        return _api_url(
            self,
            f"{self.route}-version",
            asset.workspace.name,
            asset.name,
            asset.version,
        )

    def get_page(self, asset: Any) -> str:
        return _page_url(self, asset.get_absolute_url())


class ModelAssetSerializer(_AssetSerializer):
    route = "model"

    class Meta:
        model = ModelAsset
        fields = ["name", "version", "type", "path", "source", "description", "tags",
                  "mlflow", "created_by", "created_at", "version_count", "url",
                  "page"]  # fmt: skip


class DataAssetSerializer(_AssetSerializer):
    route = "data"

    class Meta:
        model = DataAsset
        fields = ["name", "version", "type", "path", "description", "tags",
                  "created_by", "created_at", "version_count", "url",
                  "page"]  # fmt: skip


class EnvironmentSerializer(_AssetSerializer):
    route = "environment"

    class Meta:
        model = Environment
        fields = ["name", "version", "python_requirements", "description", "tags",
                  "created_by", "created_at", "version_count", "url",
                  "page"]  # fmt: skip


class ModelRegisterSerializer(serializers.Serializer):
    """Exactly one source: `files` (or one zip), `server_path`, or `mlflow_uri`."""

    name = name_field(
        NAME_RE, 128, allow_blank=True, default="",
        help_text="Default: the MLflow model's name.",
    )  # fmt: skip
    type = serializers.ChoiceField(
        choices=["", *ModelAsset.Type.values], default="", source="declared_type"
    )
    files = files_field(source="uploads", help_text="Model files, or one .zip.")
    upload_names = names_field("Each file's relative path in the model folder.")
    server_path = text_field(1024, help_text="A folder or file under an allowed root.")
    mlflow_uri = text_field(512, help_text="models:/NAME/VERSION or models:/NAME@ALIAS")
    description = text_field()
    tags = TagsField(default=dict)


class DataRegisterSerializer(serializers.Serializer):
    """Exactly one source: `files` (or one zip), `url`, or `server_path`."""

    name = name_field(NAME_RE, 128)
    type = serializers.ChoiceField(
        choices=DataAsset.Type.values, default="uri_folder", source="data_type"
    )
    files = files_field(source="uploads")
    upload_names = names_field("Each file's relative path in the folder.")
    url = text_field(2048, help_text="http(s); fetched when a job runs.")
    server_path = text_field(2048, help_text="A path under an allowed root.")
    description = text_field()
    tags = TagsField(default=dict)


class EnvironmentCreateSerializer(serializers.Serializer):
    """Pip lines and/or a conda file; neither = the worker's own Python."""

    name = name_field(NAME_RE, 128)
    python_requirements = serializers.ListField(
        child=serializers.CharField(max_length=1000), default=list
    )
    conda_file = serializers.FileField(required=False, default=None)
    description = text_field()


# -- endpoints and deployments


class EndpointSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    url = serializers.SerializerMethodField()
    deployments = serializers.SerializerMethodField()
    invoke = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    class Meta:
        model = BatchEndpoint
        fields = ["name", "description", "state", "default_deployment",
                  "created_by", "created_at", "url", "deployments", "invoke",
                  "page"]  # fmt: skip

    def get_url(self, endpoint: BatchEndpoint) -> str:
        return _api_url(self, "endpoint-detail", endpoint.workspace.name, endpoint.name)

    def get_deployments(self, endpoint: BatchEndpoint) -> str:
        return _api_url(self, "deployment-list", endpoint.workspace.name, endpoint.name)

    def get_invoke(self, endpoint: BatchEndpoint) -> str:
        return _api_url(self, "endpoint-invoke", endpoint.workspace.name, endpoint.name)

    def get_page(self, endpoint: BatchEndpoint) -> str:
        return _page_url(self, endpoint.get_absolute_url())


class EndpointCreateSerializer(serializers.Serializer):
    name = name_field(ENDPOINT_NAME_RE, 32)
    description = text_field()


class SetDefaultSerializer(serializers.Serializer):
    default_deployment = name_field(ENDPOINT_NAME_RE, 32)


class DeploymentSerializer(serializers.ModelSerializer):
    model = serializers.StringRelatedField(help_text="name:version")
    environment = serializers.StringRelatedField(allow_null=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = BatchDeployment
        fields = ["name", "revision", "description", "model", "environment",
                  "code_path", "scoring_script", "compute", "settings",
                  "created_by", "created_at", "url"]  # fmt: skip

    def get_url(self, deployment: BatchDeployment) -> str:
        ep = deployment.endpoint
        return _api_url(self, "deployment-revision", ep.workspace.name, ep.name,
                        deployment.name, deployment.revision)  # fmt: skip


class DeploymentCreateSerializer(serializers.Serializer):
    """A new revision of deployment `name` (revision 1 when the name is new)."""

    name = name_field(ENDPOINT_NAME_RE, 32)
    description = text_field()
    model = serializers.CharField(
        max_length=260, help_text="A registered model: name:version or name@latest."
    )
    code = files_field(
        source="code_uploads", help_text="The code folder's files or a zip."
    )
    code_names = names_field("Each code file's relative path in the folder.")
    code_path = text_field(1024, help_text="A folder under an allowed root; copied.")
    keep_code = serializers.BooleanField(
        default=False, help_text="Reuse the current revision's code."
    )
    scoring_script = text_field(255)
    environment = text_field(260, help_text="name:version or name@latest.")
    compute = serializers.CharField(max_length=64, default="default")
    settings = JSONObjectField(default=dict, help_text="Deployment settings.")
    make_default = serializers.BooleanField(default=False)


# -- jobs


class InvokeSerializer(serializers.Serializer):
    """One input (a data asset, a URL or files) and optional job details."""

    deployment_name = name_field(
        ENDPOINT_NAME_RE, 32, allow_blank=True, default="",
        help_text="Default: the endpoint's default.",
    )  # fmt: skip
    data_asset = text_field(260, help_text="name:version or name@latest.")
    url = text_field(2048, help_text="An http(s) URL, fetched when the job runs.")
    input_files = files_field(source="uploads", help_text="Files to score.")
    output_path = text_field(1024, help_text="Relative to the workspace's datastore.")
    job_name = name_field(
        JOB_NAME_RE, 64, allow_blank=True, default="",
        help_text="Default: a generated name.",
    )  # fmt: skip
    overrides = JSONObjectField(default=dict, help_text="Settings for this job.")
    tags = TagsField(default=dict)


class ResumeSerializer(serializers.Serializer):
    overrides = JSONObjectField(
        default=dict,
        help_text="Settings to change for the rest of the job, e.g."
        ' {"mini_batch_error_threshold": -1}; mini_batch_size cannot change.',
    )


class JobSerializer(serializers.ModelSerializer):
    endpoint = serializers.CharField(source="endpoint_name", read_only=True)
    deployment = serializers.CharField(source="deployment_label", read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    percent = serializers.IntegerField(source="percent_done", read_only=True)
    url = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["name", "endpoint", "deployment", "status", "cancel_requested",
                  "input", "input_type", "overrides", "settings", "tags",
                  "mini_batches_total", "mini_batches_succeeded",
                  "mini_batches_failed", "mini_batches_running",
                  "items_succeeded", "items_failed", "percent", "node",
                  "error", "error_log", "created_by", "created_at",
                  "started_at", "finished_at", "url", "progress",
                  "page"]  # fmt: skip

    def get_url(self, job: Job) -> str:
        return _api_url(self, "job-detail", job.workspace.name, job.name)

    def get_progress(self, job: Job) -> str:
        return _api_url(self, "job-progress", job.workspace.name, job.name)

    def get_page(self, job: Job) -> str:
        return _page_url(self, job.get_absolute_url())


class JobFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobStatus.values, required=False)
    endpoint = serializers.CharField(max_length=32, required=False)


class JobCountsSerializer(serializers.Serializer):
    mini_batches_total = serializers.IntegerField()
    mini_batches_done = serializers.IntegerField()
    mini_batches_succeeded = serializers.IntegerField()
    mini_batches_failed = serializers.IntegerField()
    items_succeeded = serializers.IntegerField()
    items_failed = serializers.IntegerField()


class JobProgressSerializer(serializers.Serializer):
    """The payload of services.jobs.job_status (the job page polls the same)."""

    status = serializers.ChoiceField(choices=JobStatus.values)
    terminal = serializers.BooleanField()
    cancel_requested = serializers.BooleanField()
    percent = serializers.IntegerField()
    counts = JobCountsSerializer()
    eta_seconds = serializers.FloatField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    error = serializers.CharField()
    error_log = serializers.CharField()


class JobFileSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Relative to the job folder, posix.")
    is_dir = serializers.BooleanField()
    size = serializers.IntegerField()
    modified = serializers.FloatField(help_text="Seconds since the epoch.")
    is_link = serializers.BooleanField()


class JobFilesSerializer(serializers.Serializer):
    entries = JobFileSerializer(many=True)
    truncated = serializers.BooleanField(help_text="More entries than listed.")


class LogQuerySerializer(serializers.Serializer):
    path = serializers.CharField(
        max_length=1024, trim_whitespace=False, source="relative",
        help_text="A file of the job folder, e.g. logs/job_progress_overview.txt.",
    )  # fmt: skip
    offset = serializers.IntegerField(
        min_value=0, max_value=2**62, required=False, default=None,
        help_text="Byte to read from (the previous chunk's end); default: the end.",
    )  # fmt: skip
    limit = serializers.IntegerField(
        min_value=1, max_value=LOG_LIMIT_MAX, default=jobfiles.TAIL_LIMIT,
        help_text="Most bytes returned.",
    )  # fmt: skip


class LogChunkSerializer(serializers.Serializer):
    """Whole lines of one file; `end` is the offset to ask for next."""

    path = serializers.CharField()
    text = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    size = serializers.IntegerField(help_text="The file's size when read.")
