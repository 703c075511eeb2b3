"""`manage.py batch-endpoint create|show|list|delete|invoke`, as `az ml`."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from ... import cli, cli_files
from ...models import BatchEndpoint, Role
from ...services.endpoints import create_endpoint, delete_endpoint
from ...services.invoke import ACCEPTED_INPUTS, invoke
from .job import TABLE_COLUMNS as JOB_COLUMNS
from .job import job_dict, stream_job

# Azure's endpoint fields; auth_mode, tags, properties and defaults are accepted
# so Azure files load, and ignored: a new endpoint's first deployment becomes
# its default.
ENDPOINT_FIELDS = (
    "$schema",
    "name",
    "description",
    "auth_mode",
    "tags",
    "properties",
    "defaults",
)
INPUT_TYPES = ("uri_folder", "uri_file")
DATA_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(:\d+|@latest)")
# The invoke service's field names, as this command's options.
INVOKE_FIELDS = {
    "input": "--input",
    "data_asset": "--input",
    "url": "--input",
    "input_files": "--input",
    "output_path": "--output-path",
    "job_name": "--job-name",
    "deployment_name": "--deployment-name",
}
TABLE_COLUMNS = ("name", "state", "default_deployment", "description")


class Command(BaseCommand):
    help = (
        "Batch endpoints, as `az ml batch-endpoint`: create (from an Azure ML CLI"
        " v2 YAML file), show, list, delete, invoke."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        create = cli.add_verb(verbs, "create", "Create an endpoint from a YAML file.")
        create.add_argument("--file", "-f", required=True, help="endpoint YAML")
        create.add_argument("--name", "-n", default="", help="overrides the file's")
        create.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="a field"
        )
        show = cli.add_verb(verbs, "show", "Show an endpoint.")
        show.add_argument("--name", "-n", required=True)
        cli.add_verb(verbs, "list", "List the workspace's endpoints.")
        delete = cli.add_verb(verbs, "delete", "Delete an endpoint; jobs are kept.")
        delete.add_argument("--name", "-n", required=True)
        delete.add_argument("--yes", "-y", action="store_true", help="do not ask")
        self._invoke_arguments(
            cli.add_verb(verbs, "invoke", "Start a job of the endpoint on an input.")
        )

    def _invoke_arguments(self, invoke_parser: CommandParser) -> None:
        add = invoke_parser.add_argument
        add("--name", "-n", required=True, help="the endpoint")
        add(
            "--input",
            "-i",
            required=True,
            help="a local file or folder (uploaded), an http(s) URL, or a data"
            " asset: azureml:name:version or azureml:name@latest",
        )
        add("--input-type", choices=INPUT_TYPES, default="", help="of a local input")
        add("--deployment-name", "-d", default="", help="default: the endpoint's")
        add("--job-name", default="", help="default: a generated name")
        add("--output-path", default="", help="job folder in the datastore")
        add("--mini-batch-size", default="", help="overrides the deployment's")
        add("--instance-count", default="", help="overrides the deployment's")
        add(
            "--set",
            action="append",
            default=[],
            metavar="SETTING=VALUE",
            help="a setting for this job, e.g. mini_batch_size=5",
        )
        add("--tags", nargs="+", default=[], metavar="KEY=VALUE", help="job tags")
        add("--stream", action="store_true", help="follow the job until it ends")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"_{verb}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        caller = cli.Caller.from_options(options)
        workspace = caller.workspace(Role.CONTRIBUTOR)
        document = cli_files.document_from(options, {"name": "name"})
        document.check_fields(ENDPOINT_FIELDS)
        name = document.text("name", "a batch endpoint needs a name (or --name)")
        with document.refusals():
            endpoint = create_endpoint(
                workspace,
                caller.user,
                name=name,
                description=document.text("description"),
            )
        cli.emit(self.stdout, endpoint_dict(endpoint), options, TABLE_COLUMNS)

    def _show(self, options: dict[str, Any]) -> None:
        endpoint = cli.Caller.from_options(options).endpoint(options["name"])
        cli.emit(self.stdout, endpoint_dict(endpoint), options, TABLE_COLUMNS)

    def _list(self, options: dict[str, Any]) -> None:
        workspace = cli.Caller.from_options(options).workspace()
        endpoints = BatchEndpoint.objects.filter(workspace=workspace)
        listed = endpoints.select_related("created_by").prefetch_related("deployments")
        rows = [endpoint_dict(e, workspace.name) for e in listed]
        cli.emit(self.stdout, rows, options, TABLE_COLUMNS)

    def _delete(self, options: dict[str, Any]) -> None:
        caller = cli.Caller.from_options(options)
        endpoint = caller.endpoint(options["name"], Role.CONTRIBUTOR)
        if not options["yes"]:
            _confirm(f"Delete batch endpoint '{endpoint.name}' and its deployments?")
        with cli.service_errors():
            delete_endpoint(endpoint)
        cli.emit(self.stdout, endpoint_dict(endpoint), options, TABLE_COLUMNS)

    def _invoke(self, options: dict[str, Any]) -> None:
        caller = cli.Caller.from_options(options)
        endpoint = caller.endpoint(options["name"], Role.CONTRIBUTOR)
        source = _input_source(options["input"], options["input_type"])
        with contextlib.ExitStack() as stack:
            if isinstance(source, Path):
                uploads, _ = stack.enter_context(cli_files.local_files(source))
                source = {"uploads": uploads}
            with cli.service_errors(INVOKE_FIELDS):
                job = invoke(
                    endpoint,
                    caller.user,
                    deployment_name=options["deployment_name"],
                    output_path=options["output_path"],
                    job_name=options["job_name"],
                    overrides=_overrides(options),
                    tags=cli.key_values(options["tags"], "--tags"),
                    **source,
                )
        cli.emit(self.stdout, job_dict(job), options, JOB_COLUMNS)
        if options["stream"]:
            stream_job(self.stdout, job)


def endpoint_dict(endpoint: BatchEndpoint, workspace: str = "") -> dict[str, Any]:
    workspace = workspace or endpoint.workspace.name
    return {
        "name": endpoint.name,
        "description": endpoint.description,
        "state": endpoint.state,
        "default_deployment": endpoint.default_deployment or None,
        "deployments": sorted({d.name for d in endpoint.deployments.all()}),
        "created_by": cli.username(endpoint.created_by),
        "created_at": cli.isotime(endpoint.created_at),
        "studio_url": reverse(
            "studio:endpoint-detail", args=[workspace, endpoint.name]
        ),
    }


def _input_source(raw: str, input_type: str) -> Path | dict[str, str]:
    """A local path to upload, or the invoke service's url / data_asset argument."""
    text = raw.strip()
    if text.startswith(("http://", "https://")):
        return {"url": text}
    if text.startswith("azureml:"):
        return {"data_asset": text}
    local = Path(text).expanduser()
    if local.exists():
        if local.is_dir() and input_type == "uri_file":
            raise CommandError(
                f"--input-type uri_file: {text} is a folder; use uri_folder"
            )
        return local.resolve()
    if DATA_REFERENCE.fullmatch(text):
        return {"data_asset": text}
    raise CommandError(
        f"--input {text}: no such local file or folder; unsupported input:"
        f" {ACCEPTED_INPUTS}"
    )


def _overrides(options: dict[str, Any]) -> dict[str, str]:
    overrides = cli.key_values(options["set"], "--set")
    for option in ("mini_batch_size", "instance_count"):
        if options[option]:
            overrides[option] = options[option]
    return overrides


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise CommandError(
            "batch-endpoint delete asks before deleting; add --yes to delete"
            " without asking"
        )
    if input(f"{question} Jobs keep their history. [y/N] ").strip().lower() not in (
        "y",
        "yes",
    ):
        raise CommandError("nothing was deleted")
