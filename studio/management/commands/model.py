"""`manage.py model create|list|show`, as `az ml model`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ... import cli, cli_files
from ...models import ModelAsset, Role
from ...services.assets import register_model

# Azure's model fields; properties and stage are accepted and ignored.
MODEL_FIELDS = (
    "$schema",
    "name",
    "version",
    "path",
    "type",
    "description",
    "tags",
    "properties",
    "stage",
)
FLAGS = {
    "name": "name",
    "version": "version",
    "path": "path",
    "type": "type",
    "description": "description",
}
SERVICE_FIELDS = {"server_path": "path", "mlflow_uri": "path"}
TABLE_COLUMNS = ("name", "version", "type", "versions", "description")


class Command(BaseCommand):
    help = "Models, as `az ml model`: create (from YAML or flags), list, show."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        create = cli.add_verb(verbs, "create", "Register a model's next version.")
        create.add_argument("--file", "-f", default="", help="model YAML")
        create.add_argument("--name", "-n", default="")
        create.add_argument("--version", "-v", default="", help="must be the next")
        create.add_argument(
            "--path",
            "-p",
            default="",
            help="a local file or folder (copied) or models:/<name>/<version>",
        )
        create.add_argument("--type", "-t", default="", help="mlflow_model, ...")
        create.add_argument("--description", "-d", default="")
        create.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        cli.add_list_and_show(verbs, "model", "a")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"_{verb}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        caller = cli.Caller.from_options(options)
        workspace = caller.workspace(Role.CONTRIBUTOR)
        document = cli_files.document_from(options, FLAGS)
        document.check_fields(MODEL_FIELDS)
        name = document.text("name", "a model needs a name (or --name)")
        path = document.text("path", "the model's file or folder (or --path)")
        cli_files.check_version(
            ModelAsset, workspace, name, document.data.get("version")
        )
        arguments = {
            "name": name,
            "declared_type": document.text("type"),
            "description": document.text("description"),
            "tags": document.tags(),
        }
        with document.refusals(SERVICE_FIELDS):
            if path.startswith("models:/"):
                model = register_model(
                    workspace, caller.user, mlflow_uri=path, **arguments
                )
            else:
                if "://" in path or path.startswith("azureml:"):
                    raise document.refuse(
                        f"path: {path} is not supported; give a local file or folder"
                        " (copied into the datastore) or an MLflow registry URI"
                        " models:/<name>/<version>"
                    )
                local = document.local_path(path, "path")
                with cli_files.local_files(local, in_folder=True) as (files, names):
                    model = register_model(
                        workspace,
                        caller.user,
                        uploads=files,
                        upload_names=names,
                        **arguments,
                    )
        cli.emit(self.stdout, model_dict(model), options, TABLE_COLUMNS)

    def _list(self, options: dict[str, Any]) -> None:
        cli.list_versions(self.stdout, options, ModelAsset, model_dict, TABLE_COLUMNS)

    def _show(self, options: dict[str, Any]) -> None:
        cli.show_version(
            self.stdout, options, ModelAsset, "model", model_dict, TABLE_COLUMNS
        )


def model_dict(model: ModelAsset) -> dict[str, Any]:
    extra = {}
    if hasattr(model, "version_count"):
        extra["versions"] = model.version_count
    return cli.asset_dict(
        model,
        type=model.type,
        path=model.path,
        source=model.source,
        mlflow=model.mlflow,
        **extra,
    )
