"""Deployments in the Azure ML CLI v2 YAML shape: model, code, environment, settings."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import yaml

from .config import (
    OVERRIDABLE,
    SETTING_FIELDS,
    Settings,
    build_settings,
    check_choice,
    close_match,
    refuse_unknown,
    show_value,
)
from .errors import YAML_FAILURES, SpecError, yaml_problem

MODEL_TYPES = ("mlflow_model", "custom_model")
TOP_LEVEL_FIELDS = (
    "$schema",
    "name",
    "endpoint_name",
    "description",
    "type",
    "model",
    "code_configuration",
    "environment",
    "compute",
    "resources",
    "settings",
    "tags",
    "properties",
    *SETTING_FIELDS,
)


@dataclass(frozen=True)
class ModelSpec:
    """The model files a deployment scores with."""

    path: Path
    type: str = "custom_model"

    @property
    def is_mlflow(self) -> bool:
        return self.type == "mlflow_model"


@dataclass(frozen=True)
class EnvironmentSpec:
    """Pip requirement lines of the scoring environment; empty = the engine's Python."""

    python_requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentSpec:
    """A validated deployment: what to score with and how."""

    model: ModelSpec | None
    code_dir: Path | None
    scoring_script: str | None
    environment: EnvironmentSpec | None
    settings: Settings = Settings()
    name: str = ""

    @property
    def uses_builtin_scorer(self) -> bool:
        return self.code_dir is None


# A resolver turns a registered reference such as `azureml:name:version` into a
# path; the studio provides one, the command line has none.
ReferenceResolver = Callable[[str, str], Path]


def load_deployment(
    path: Path, resolve_reference: ReferenceResolver | None = None
) -> DeploymentSpec:
    """Read and validate a deployment YAML file.

    Relative paths in it resolve against the file's folder, as in Azure.
    Raises SpecError naming the field and the allowed values.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read deployment file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"deployment file {path} is not UTF-8 text: {exc.reason} at byte"
            f" {exc.start}"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except YAML_FAILURES as exc:
        raise SpecError(
            f"deployment file {path} is not valid YAML: {yaml_problem(exc)}"
        ) from exc
    return parse_deployment(data, Path(path).parent, resolve_reference)


def parse_deployment(
    data: Any, base_dir: Path, resolve_reference: ReferenceResolver | None = None
) -> DeploymentSpec:
    """Validate a deployment given as a mapping (either Azure shape)."""
    if not isinstance(data, Mapping):
        raise SpecError("a deployment must be a YAML mapping of fields")
    refuse_unknown(data, TOP_LEVEL_FIELDS, "")
    raw_settings = {key: data[key] for key in SETTING_FIELDS if key in data}
    nested = data.get("settings") or {}
    if not isinstance(nested, Mapping):
        raise SpecError("settings: must be a mapping of setting fields")
    refuse_unknown(nested, SETTING_FIELDS, "settings.")
    raw_settings.update(nested)
    resources = data.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise SpecError("resources: must be a mapping such as {instance_count: 1}")
    refuse_unknown(resources, ("instance_count", "properties"), "resources.")
    if "instance_count" in resources:
        raw_settings["instance_count"] = resources["instance_count"]
    settings = build_settings(raw_settings)

    base_dir = Path(base_dir)
    model = _parse_model(data.get("model"), base_dir, resolve_reference)
    code_dir, script = _parse_code(data.get("code_configuration"), base_dir)
    environment = _parse_environment(data.get("environment"), base_dir)
    spec = DeploymentSpec(
        model=model,
        code_dir=code_dir,
        scoring_script=script,
        environment=environment,
        settings=settings,
        name=str(data.get("name") or ""),
    )
    check_scorable(spec)
    return spec


def check_scorable(spec: DeploymentSpec) -> None:
    """Refuse deployments that cannot score (DESIGN section 5, first row)."""
    if spec.model is None and spec.code_dir is None:
        raise SpecError(
            "model: a deployment needs a model (or a scoring script that needs none)"
        )
    if spec.model is not None and spec.model.is_mlflow:
        return
    missing = [
        name
        for name, value in (
            ("code_configuration", spec.code_dir),
            ("environment", spec.environment),
        )
        if value is None
    ]
    if missing:
        raise SpecError(
            f"{' and '.join(missing)}: no-code deployment is for MLflow models only;"
            " this model is not an MLflow model (no MLmodel file).",
            hint="Add code_configuration (code folder + scoring_script) and an"
            " environment; `environment: {python_requirements: []}` runs the"
            " script with the worker's own interpreter.",
        )


def apply_overrides(
    spec: DeploymentSpec, overrides: Mapping[str, Any]
) -> DeploymentSpec:
    """Return `spec` with per-job overrides such as {"mini_batch_size": "5"}."""
    raw = {}
    for key, value in overrides.items():
        if key not in OVERRIDABLE:
            raise SpecError(
                f"{key}: cannot be overridden for one job",
                hint=f"allowed: {', '.join(OVERRIDABLE)}"
                + close_match(key, OVERRIDABLE),
            )
        raw[OVERRIDABLE[key]] = value
    return dataclasses.replace(spec, settings=build_settings(raw, spec.settings))


def _parse_model(
    value: Any, base_dir: Path, resolve_reference: ReferenceResolver | None
) -> ModelSpec | None:
    if value is None:
        return None
    declared = None
    if isinstance(value, str):
        path = _resolve_reference("model", value, resolve_reference)
    elif isinstance(value, Mapping):
        refuse_unknown(
            value, ("path", "type", "name", "version", "description", "tags"), "model."
        )
        if not value.get("path"):
            raise SpecError("model.path: an inline model needs the folder of its files")
        path = _local_path("model.path", value["path"], base_dir)
        declared = value.get("type")
        if declared is not None:
            check_choice("model.type", declared, MODEL_TYPES)
    else:
        raise SpecError(
            "model: must be a reference such as azureml:name:version or a mapping"
            " with path (and optional type)"
        )
    if _stat("model.path", path) is None:
        raise SpecError(f"model.path: {path} does not exist")
    try:
        detected = detect_model_type(path, declared)
    except OSError as exc:
        raise SpecError(f"model.path: cannot read {path}: {exc.strerror}") from exc
    return ModelSpec(path=path, type=detected)


def detect_model_type(path: Path, declared: str | None = None) -> str:
    """A folder holding an MLmodel file is an MLflow model whatever `type` says."""
    candidates = [path / "MLmodel"]
    if path.is_dir():
        candidates += [child / "MLmodel" for child in path.iterdir() if child.is_dir()]
    if any(candidate.is_file() for candidate in candidates):
        return "mlflow_model"
    return declared or "custom_model"


def _parse_code(value: Any, base_dir: Path) -> tuple[Path | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, Mapping):
        raise SpecError("code_configuration: must be a mapping {code, scoring_script}")
    refuse_unknown(value, ("code", "scoring_script"), "code_configuration.")
    if not value.get("code") or not value.get("scoring_script"):
        raise SpecError(
            "code_configuration: needs both code (a folder) and scoring_script"
            " (a file name in it)"
        )
    code = value["code"]
    if isinstance(code, str) and code.startswith("azureml:"):
        raise SpecError("code_configuration.code: must be a folder path")
    code_dir = _local_path("code_configuration.code", code, base_dir)
    found = _stat("code_configuration.code", code_dir)
    if found is None or not stat.S_ISDIR(found.st_mode):
        raise SpecError(f"code_configuration.code: {code_dir} is not a folder")
    script = _script_name(value["scoring_script"])
    found = _stat("code_configuration.scoring_script", code_dir / script)
    if found is None or not stat.S_ISREG(found.st_mode):
        raise SpecError(
            f"code_configuration.scoring_script: {script} not found in {code_dir}"
        )
    return code_dir, script


def _script_name(value: Any) -> str:
    """The scoring script: a relative path that stays inside the code folder."""
    script = str(value)
    if (
        "\0" in script
        or PurePath(script).is_absolute()
        or ".." in PurePath(script).parts
    ):
        raise SpecError(
            "code_configuration.scoring_script: must be a file in the code folder"
            f" such as score.py, not {show_value(value)}"
        )
    return script


def _parse_environment(value: Any, base_dir: Path) -> EnvironmentSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise SpecError(
            f"environment: {value!r} is a registered reference; the engine needs it"
            " inline (python_requirements or conda_file)"
        )
    if not isinstance(value, Mapping):
        raise SpecError("environment: must be a mapping with python_requirements")
    refuse_unknown(
        value,
        (
            "name",
            "version",
            "description",
            "image",
            "conda_file",
            "python_requirements",
        ),
        "environment.",
    )
    requirements: list[str] = []
    listed = value.get("python_requirements") or []
    if not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
        raise SpecError("environment.python_requirements: must be a list of pip lines")
    requirements += [_resolve_requirement(line, base_dir) for line in listed]
    if value.get("conda_file"):
        conda_file = _local_path(
            "environment.conda_file", value["conda_file"], base_dir
        )
        requirements += [
            _resolve_requirement(line, conda_file.parent)
            for line in _conda_pip_lines(conda_file)
        ]
    return EnvironmentSpec(python_requirements=tuple(requirements))


def _conda_pip_lines(conda_file: Path) -> list[str]:
    from .environments import read_conda_pip_requirements

    try:
        return read_conda_pip_requirements(conda_file)
    except SpecError as exc:
        raise SpecError(f"environment.conda_file: {exc.message}", exc.hint) from exc


def _local_path(field_name: str, value: Any, base_dir: Path) -> Path:
    """A path from the YAML, resolved against the YAML file's folder."""
    if not isinstance(value, str | os.PathLike):
        raise SpecError(f"{field_name}: must be a path, not {show_value(value)}")
    text = os.fspath(value)
    if "\0" in text:
        raise SpecError(f"{field_name}: {show_value(text)} holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError(
            f"{field_name}: {show_value(text)} is not valid UTF-8 text"
        ) from None
    try:
        return (base_dir / text).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        raise SpecError(f"{field_name}: cannot resolve {show_value(text)}") from exc


def _stat(field_name: str, path: Path) -> os.stat_result | None:
    """The file's status; None when nothing is there."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a name too long, no permission, a link loop
        raise SpecError(
            f"{field_name}: cannot use {show_value(str(path), 120)}: {exc.strerror}"
        ) from exc


def _resolve_requirement(line: str, base_dir: Path) -> str:
    """Local paths in requirement lines resolve against the YAML file's folder."""
    stripped = line.strip()
    if stripped.startswith(("./", "../")):
        return str((base_dir / stripped).resolve())
    return stripped


def _resolve_reference(
    field_name: str, value: str, resolve_reference: ReferenceResolver | None
) -> Path:
    if resolve_reference is None:
        raise SpecError(
            f"{field_name}: {value!r} is a registered reference, which only the studio"
            " resolves; give an inline path instead, e.g. model: {path: ./model}"
        )
    return resolve_reference(field_name, value)
