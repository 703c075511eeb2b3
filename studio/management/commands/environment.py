"""`manage.py environment create|list|show`, as `az ml environment`."""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ... import cli, cli_files
from ...models import Environment, Role
from ...services.assets import create_environment

# Azure's environment fields; image and os_type are accepted and ignored
# (scoring runs in a virtualenv built from the pip lines, DESIGN section 1).
ENVIRONMENT_FIELDS = (
    "$schema",
    "name",
    "version",
    "description",
    "tags",
    "image",
    "conda_file",
    "python_requirements",
    "os_type",
)
FLAGS = {
    "name": "name",
    "version": "version",
    "conda_file": "conda_file",
    "image": "image",
    "description": "description",
}
TABLE_COLUMNS = ("name", "version", "versions", "python_requirements")


class Command(BaseCommand):
    help = (
        "Environments, as `az ml environment`: create (from YAML or flags), list,"
        " show. An empty one runs scoring with the worker's own Python."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        create = cli.add_verb(
            verbs, "create", "Register an environment's next version."
        )
        create.add_argument("--file", "-f", default="", help="environment YAML")
        create.add_argument("--name", "-n", default="")
        create.add_argument("--version", "-v", default="", help="must be the next")
        create.add_argument("--conda-file", default="", help="its pip section is used")
        create.add_argument("--image", default="", help="accepted and ignored")
        create.add_argument("--description", "-d", default="")
        create.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        cli.add_list_and_show(verbs, "environment", "an")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"_{verb}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        caller = cli.Caller.from_options(options)
        workspace = caller.workspace(Role.CONTRIBUTOR)
        document = cli_files.document_from(options, FLAGS)
        document.check_fields(ENVIRONMENT_FIELDS)
        name = document.text("name", "an environment needs a name (or --name)")
        cli_files.check_version(
            Environment, workspace, name, document.data.get("version")
        )
        requirements = document.data.get("python_requirements") or []
        if not isinstance(requirements, list) or not all(
            isinstance(line, str) for line in requirements
        ):
            raise document.refuse(
                "python_requirements: must be a list of pip requirement lines"
            )
        conda = document.text("conda_file")
        with contextlib.ExitStack() as stack, document.refusals():
            conda_file = None
            if conda:
                local = document.local_path(conda, "conda_file")
                files, _ = stack.enter_context(cli_files.local_files(local))
                conda_file = files[0] if files else None
            env = create_environment(
                workspace,
                caller.user,
                name=name,
                python_requirements=requirements,
                conda_file=conda_file,
                description=document.text("description"),
            )
        cli.emit(self.stdout, environment_dict(env), options, TABLE_COLUMNS)

    def _list(self, options: dict[str, Any]) -> None:
        cli.list_versions(
            self.stdout, options, Environment, environment_dict, TABLE_COLUMNS
        )

    def _show(self, options: dict[str, Any]) -> None:
        cli.show_version(
            self.stdout,
            options,
            Environment,
            "environment",
            environment_dict,
            TABLE_COLUMNS,
        )


def environment_dict(env: Environment) -> dict[str, Any]:
    extra = {}
    if hasattr(env, "version_count"):
        extra["versions"] = env.version_count
    return cli.asset_dict(env, python_requirements=env.python_requirements, **extra)
