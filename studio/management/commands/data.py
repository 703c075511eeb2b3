"""`manage.py data create|list|show`, as `az ml data`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ... import cli, cli_files
from ...models import DataAsset, Role
from ...services.assets import register_data

# Azure's data fields; properties is accepted and ignored.
DATA_FIELDS = (
    "$schema",
    "name",
    "version",
    "type",
    "path",
    "description",
    "tags",
    "properties",
)
FLAGS = {
    "name": "name",
    "version": "version",
    "path": "path",
    "type": "type",
    "description": "description",
}
SERVICE_FIELDS = {"url": "path", "server_path": "path"}
TABLE_COLUMNS = ("name", "version", "type", "versions", "path")


class Command(BaseCommand):
    help = "Data assets, as `az ml data`: create (from YAML or flags), list, show."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        create = cli.add_verb(verbs, "create", "Register a data asset's next version.")
        create.add_argument("--file", "-f", default="", help="data YAML")
        create.add_argument("--name", "-n", default="")
        create.add_argument("--version", "-v", default="", help="must be the next")
        create.add_argument(
            "--path", "-p", default="", help="a local file or folder (copied) or a URL"
        )
        create.add_argument(
            "--type", "-t", default="", help="uri_folder (default) or uri_file"
        )
        create.add_argument("--description", "-d", default="")
        create.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        cli.add_list_and_show(verbs, "data asset", "a")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"_{verb}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        caller = cli.Caller.from_options(options)
        workspace = caller.workspace(Role.CONTRIBUTOR)
        document = cli_files.document_from(options, FLAGS)
        document.check_fields(DATA_FIELDS)
        name = document.text("name", "a data asset needs a name (or --name)")
        path = document.text("path", "a local file or folder, or a URL (or --path)")
        cli_files.check_version(
            DataAsset, workspace, name, document.data.get("version")
        )
        arguments = {
            "name": name,
            "data_type": document.text("type") or DataAsset.Type.FOLDER,
            "description": document.text("description"),
            "tags": document.tags(),
        }
        with document.refusals(SERVICE_FIELDS):
            if path.startswith(("http://", "https://")):
                data = register_data(workspace, caller.user, url=path, **arguments)
            else:
                if "://" in path or path.startswith("azureml:"):
                    raise document.refuse(
                        f"path: {path} is not supported; give a local file or folder"
                        " (copied into the datastore) or an http(s) URL"
                    )
                local = document.local_path(path, "path")
                with cli_files.local_files(local) as (files, names):
                    data = register_data(
                        workspace,
                        caller.user,
                        uploads=files,
                        upload_names=names,
                        **arguments,
                    )
        cli.emit(self.stdout, data_dict(data), options, TABLE_COLUMNS)

    def _list(self, options: dict[str, Any]) -> None:
        cli.list_versions(self.stdout, options, DataAsset, data_dict, TABLE_COLUMNS)

    def _show(self, options: dict[str, Any]) -> None:
        cli.show_version(
            self.stdout, options, DataAsset, "data asset", data_dict, TABLE_COLUMNS
        )


def data_dict(asset: DataAsset) -> dict[str, Any]:
    extra = {}
    if hasattr(asset, "version_count"):
        extra["versions"] = asset.version_count
    return cli.asset_dict(asset, type=asset.type, path=asset.path, **extra)
