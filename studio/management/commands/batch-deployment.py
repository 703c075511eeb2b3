"""`manage.py batch-deployment create|show|list|update`, as `az ml`."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from scoring_engine import DeploymentSpec, parse_deployment
from scoring_engine.config import OVERRIDABLE, SETTING_FIELDS, close_match

from ... import cli, cli_files
from ...models import (
    BatchDeployment,
    BatchEndpoint,
    Environment,
    ModelAsset,
    Role,
    Workspace,
)
from ...services.assets import (
    check_asset_name,
    check_requirements,
    create_environment,
    register_model,
)
from ...services.endpoints import (
    CODE_IGNORE,
    check_endpoint_name,
    create_deployment,
    resolve_versioned,
)

# The services' field names, as the YAML file calls them.
DEPLOYMENT_FIELDS = {
    "code": "code_configuration.code",
    "scoring_script": "code_configuration.scoring_script",
    "type": "model.type",
    "server_path": "model.path",
}
# What `update --set` may change without a file, besides settings.
UPDATE_FIELDS = ("model", "environment", "compute", "description")
TABLE_COLUMNS = ("name", "revision", "is_default", "model", "environment", "compute")


@dataclass
class Plan:
    """A validated deployment file: what to register, then the revision to save."""

    name: str
    spec: DeploymentSpec
    description: str
    compute: str
    model_ref: str = ""  # a registered model, else the inline one below
    model_name: str = ""
    model_type: str = ""
    env_ref: str = ""  # a registered environment, else the inline one below
    env_name: str = ""
    env_requirements: list[str] | None = None


class Command(BaseCommand):
    help = (
        "Batch deployments, as `az ml batch-deployment`: create and update (new"
        " revisions, from Azure ML CLI v2 YAML files), show, list."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        create = cli.add_verb(verbs, "create", "Create a deployment from YAML.")
        create.add_argument("--file", "-f", required=True, help="deployment YAML")
        update = cli.add_verb(
            verbs, "update", "Save a new revision, from YAML or the current one."
        )
        update.add_argument("--file", "-f", default="", help="deployment YAML")
        for parser_ in (create, update):
            parser_.add_argument("--name", "-n", default="", help="the deployment")
            parser_.add_argument("--endpoint-name", "-e", default="")
            parser_.add_argument(
                "--set", action="append", default=[], metavar="KEY=VALUE"
            )
            parser_.add_argument(
                "--set-default", action="store_true", help="make it the default"
            )
        show = cli.add_verb(verbs, "show", "Show a deployment's current revision.")
        show.add_argument("--name", "-n", required=True)
        show.add_argument("--endpoint-name", "-e", required=True)
        show.add_argument("--revision", type=int, default=0)
        listing = cli.add_verb(verbs, "list", "List an endpoint's deployments.")
        listing.add_argument("--endpoint-name", "-e", required=True)
        listing.add_argument(
            "--all-revisions", action="store_true", help="not only the current ones"
        )

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"_{verb}")(options)

    def _create(self, options: dict[str, Any], update: bool = False) -> None:
        caller = cli.Caller.from_options(options)
        document = cli_files.load_yaml(options["file"])
        document.set(options["set"], _setting_place(document.data))
        for option in ("name", "endpoint_name"):
            if options[option]:
                document.data[option] = options[option]
                document.lines.pop(option, None)
        endpoint = caller.endpoint(
            document.text("endpoint_name", "give the endpoint (or --endpoint-name)"),
            Role.CONTRIBUTOR,
        )
        name = document.text("name", "a batch deployment needs a name (or --name)")
        _check_exists(endpoint, name, update)
        plan = plan_deployment(document, endpoint.workspace, name)
        deployment = save_plan(plan, endpoint, caller.user, options["set_default"])
        _print(self.stdout, deployment, endpoint, options)

    def _update(self, options: dict[str, Any]) -> None:
        if options["file"]:
            self._create(options, update=True)
            return
        for option in ("name", "endpoint_name"):
            if not options[option]:
                flag = "--" + option.replace("_", "-")
                raise CommandError(f"{flag}: needed without --file")
        caller = cli.Caller.from_options(options)
        endpoint = caller.endpoint(options["endpoint_name"], Role.CONTRIBUTOR)
        base = _check_exists(endpoint, options["name"], update=True)
        changes = _updated(base, options["set"])
        with cli.service_errors():
            deployment = create_deployment(
                endpoint,
                caller.user,
                name=base.name,
                make_default=options["set_default"],
                **changes,
            )
        _print(self.stdout, deployment, endpoint, options)

    def _show(self, options: dict[str, Any]) -> None:
        endpoint = cli.Caller.from_options(options).endpoint(options["endpoint_name"])
        revisions = _deployments(endpoint).filter(name=options["name"])
        if options["revision"]:
            revisions = revisions.filter(revision=options["revision"])
        deployment = revisions.first()
        if deployment is None:
            raise _not_found(endpoint, options["name"], options["revision"])
        _print(self.stdout, deployment, endpoint, options)

    def _list(self, options: dict[str, Any]) -> None:
        endpoint = cli.Caller.from_options(options).endpoint(options["endpoint_name"])
        shown, names = [], set()
        for deployment in _deployments(endpoint):
            if options["all_revisions"] or deployment.name not in names:
                shown.append(deployment)
                names.add(deployment.name)
        rows = [deployment_dict(d, endpoint) for d in shown]
        cli.emit(self.stdout, rows, options, TABLE_COLUMNS)


def plan_deployment(
    document: cli_files.YamlFile, workspace: Workspace, name: str
) -> Plan:
    """Validate the whole file (engine rules, references, names) before any write."""
    data = copy.deepcopy(document.data)
    found: dict[str, ModelAsset] = {}
    with document.refusals(DEPLOYMENT_FIELDS):
        check_endpoint_name(name, kind="deployment")
        env_ref = _registered_environment(data, workspace)
        spec = parse_deployment(data, document.folder, _model_path(workspace, found))
        plan = Plan(
            name=name,
            spec=spec,
            description=document.text("description"),
            compute=document.text("compute").removeprefix("azureml:") or "default",
            env_ref=env_ref,
        )
        _plan_model(plan, data.get("model"), workspace, found.get("model"))
        _plan_environment(plan, data.get("environment"))
    return plan


def _model_path(
    workspace: Workspace, found: dict[str, ModelAsset]
) -> Callable[[str, str], Path]:
    """The engine's reference resolver: a registered model's folder."""

    def resolve(field: str, reference: str) -> Path:
        found["model"] = resolve_versioned(ModelAsset, "model", workspace, reference)
        return Path(found["model"].path)

    return resolve


def _registered_environment(data: dict[str, Any], workspace: Workspace) -> str:
    """`environment: azureml:name:version` -> its reference; the engine then
    checks the deployment with the environment's requirements inline."""
    value = data.get("environment")
    if not isinstance(value, str):
        return ""
    env = resolve_versioned(Environment, "environment", workspace, value)
    data["environment"] = {"python_requirements": list(env.python_requirements)}
    return f"{env.name}:{env.version}"


def _plan_model(
    plan: Plan, value: Any, workspace: Workspace, registered: ModelAsset | None
) -> None:
    if registered is not None:
        plan.model_ref = f"{registered.name}:{registered.version}"
        return
    if plan.spec.model is None:
        raise ValidationError(
            {
                "model": "a deployment needs a model: a registered one"
                " (azureml:name:version, azureml:name@latest) or {path: ./model}"
            }
        )
    # An inline model is registered as a new version named after the deployment.
    plan.model_name = str(value.get("name") or plan.name)
    check_asset_name(plan.model_name, "model.name")
    cli_files.check_version(
        ModelAsset, workspace, plan.model_name, value.get("version")
    )
    plan.model_type = str(value.get("type") or "")


def _plan_environment(plan: Plan, value: Any) -> None:
    if plan.env_ref or plan.spec.environment is None:
        return
    plan.env_name = str(value.get("name") or f"{plan.name}-env")
    check_asset_name(plan.env_name, "environment.name")
    plan.env_requirements = check_requirements(
        list(plan.spec.environment.python_requirements), "environment"
    )


def save_plan(
    plan: Plan, endpoint: BatchEndpoint, user: Any, make_default: bool
) -> BatchDeployment:
    """Register the inline model and environment, then save the revision."""
    with contextlib.ExitStack() as stack, cli.service_errors(DEPLOYMENT_FIELDS):
        code_files, code_names = [], None
        if plan.spec.code_dir is not None:
            code_files, code_names = stack.enter_context(
                cli_files.local_files(plan.spec.code_dir, CODE_IGNORE, in_folder=True)
            )
        model = plan.model_ref or _register_model(plan, endpoint, user, stack)
        environment = plan.env_ref or _inline_environment(plan, endpoint, user)
        return create_deployment(
            endpoint,
            user,
            name=plan.name,
            model=model,
            code_uploads=code_files,
            code_names=code_names,
            scoring_script=plan.spec.scoring_script or "",
            environment=environment,
            compute=plan.compute,
            settings=plan.spec.settings.as_dict(),
            description=plan.description,
            make_default=make_default,
        )


def _register_model(
    plan: Plan, endpoint: BatchEndpoint, user: Any, stack: contextlib.ExitStack
) -> str:
    assert plan.spec.model is not None
    files, names = stack.enter_context(
        cli_files.local_files(plan.spec.model.path, in_folder=True)
    )
    model = register_model(
        endpoint.workspace,
        user,
        name=plan.model_name,
        uploads=files,
        upload_names=names,
        declared_type=plan.model_type,
        description=f"Registered with batch deployment {endpoint.name}/{plan.name}",
    )
    return f"{model.name}:{model.version}"


def _inline_environment(plan: Plan, endpoint: BatchEndpoint, user: Any) -> str:
    """The inline environment's latest version when it is the same, else a new one."""
    if plan.env_requirements is None:
        return ""
    workspace = endpoint.workspace
    with contextlib.suppress(ValidationError):
        latest = resolve_versioned(Environment, "environment", workspace, plan.env_name)
        if latest.python_requirements == plan.env_requirements:
            return f"{latest.name}:{latest.version}"
    env = create_environment(
        workspace,
        user,
        name=plan.env_name,
        python_requirements=plan.env_requirements,
        description=f"Inline environment of batch deployment {plan.name}",
    )
    return f"{env.name}:{env.version}"


def _setting_place(data: dict[str, Any]) -> Callable[[str], str]:
    """`--set mini_batch_size=5` goes where the file keeps its settings."""

    def place(key: str) -> str:
        if key.split(".", 1)[0] in SETTING_FIELDS and isinstance(
            data.get("settings"), dict
        ):
            return f"settings.{key}"
        if key == "instance_count":
            return "resources.instance_count"
        return key

    return place


def _updated(base: BatchDeployment, pairs: list[str]) -> dict[str, Any]:
    """The create_deployment arguments of `base` with `--set` changes applied."""
    env = base.environment
    fields: dict[str, Any] = {
        "model": f"{base.model.name}:{base.model.version}",
        "environment": f"{env.name}:{env.version}" if env else "",
        "compute": base.compute,
        "description": base.description,
    }
    settings = dict(base.settings)
    for key, raw in cli.key_values(pairs, "--set").items():
        value = cli.parse_value(raw)
        setting = key.removeprefix("settings.")
        if key in UPDATE_FIELDS:
            fields[key] = str(value)
        elif setting.startswith("environment_variables."):
            variables = dict(settings.get("environment_variables") or {})
            variables[setting.split(".", 1)[1]] = "" if value is None else str(value)
            settings["environment_variables"] = variables
        elif setting in OVERRIDABLE or setting in SETTING_FIELDS:
            settings[OVERRIDABLE.get(setting, setting)] = value
        else:
            allowed = (*UPDATE_FIELDS, *SETTING_FIELDS)
            raise CommandError(
                f"--set {key}: not something an update changes; allowed:"
                f" {', '.join(allowed)}{close_match(setting, allowed)}"
            )
    fields["compute"] = fields["compute"].removeprefix("azureml:")
    return {**fields, "settings": settings, "keep_code": bool(base.code_path)}


def _print(
    stdout: Any, deployment: BatchDeployment, endpoint: BatchEndpoint, options: Any
) -> None:
    cli.emit(stdout, deployment_dict(deployment, endpoint), options, TABLE_COLUMNS)


def _check_exists(endpoint: BatchEndpoint, name: str, update: bool) -> BatchDeployment:
    current = endpoint.current_deployment(name) if name else None
    if update and current is None:
        raise _not_found(endpoint, name)
    if not update and current is not None:
        raise CommandError(
            f"batch deployment '{name}' already exists on endpoint '{endpoint.name}'"
            f" (revision {current.revision}); `batch-deployment update` saves a new"
            " revision"
        )
    return current  # type: ignore[return-value]


def _not_found(endpoint: BatchEndpoint, name: str, revision: int = 0) -> CommandError:
    names = endpoint.deployments.values_list("name", flat=True)
    what = f"'{name}' revision {revision}" if revision else f"'{name}'"
    return CommandError(
        f"batch deployment {what} not found on endpoint '{endpoint.name}'"
        f"{cli.close_names(name, names)}"
    )


def _deployments(endpoint: BatchEndpoint) -> Any:
    return endpoint.deployments.select_related(
        "model", "environment", "created_by"
    ).order_by("name", "-revision")


def deployment_dict(
    deployment: BatchDeployment, endpoint: BatchEndpoint
) -> dict[str, Any]:
    model, env = deployment.model, deployment.environment
    code = None
    if deployment.code_path:
        code = {
            "code": deployment.code_path,
            "scoring_script": deployment.scoring_script,
        }
    path_args = [endpoint.workspace.name, endpoint.name, deployment.name]
    return {
        "name": deployment.name,
        "endpoint_name": endpoint.name,
        "revision": deployment.revision,
        "is_default": endpoint.default_deployment == deployment.name,
        "description": deployment.description,
        "model": f"azureml:{model.name}:{model.version}",
        "model_type": model.type,
        "code_configuration": code,
        "environment": f"azureml:{env.name}:{env.version}" if env else None,
        "compute": deployment.compute,
        "settings": deployment.settings,
        "created_by": cli.username(deployment.created_by),
        "created_at": cli.isotime(deployment.created_at),
        "studio_url": reverse(
            "studio:deployment-detail", args=[*path_args, deployment.revision]
        ),
    }
