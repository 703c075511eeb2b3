"""Deployment specs in the Azure ML CLI v2 shape: parse, validate, override."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError

OUTPUT_ACTIONS = ("append_row", "summary_only")
LOGGING_LEVELS = ("debug", "info", "warning", "error", "critical")
MODEL_TYPES = ("mlflow_model", "custom_model")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}

# Fields that may appear at the top level (older files) or under `settings:` (newer).
SETTING_FIELDS = (
    "mini_batch_size",
    "max_concurrency_per_instance",
    "output_action",
    "output_file_name",
    "retry_settings",
    "error_threshold",
    "mini_batch_error_threshold",
    "logging_level",
    "environment_variables",
    "resource_monitor_interval",
)
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
# Names `--set` and invocation overrides accept, mapped to the Settings attribute.
OVERRIDABLE = {
    "mini_batch_size": "mini_batch_size",
    "instance_count": "instance_count",
    "resources.instance_count": "instance_count",
    "max_concurrency_per_instance": "max_concurrency_per_instance",
    "error_threshold": "error_threshold",
    "mini_batch_error_threshold": "mini_batch_error_threshold",
    "logging_level": "logging_level",
    "output_file_name": "output_file_name",
    "output_action": "output_action",
    "max_retries": "max_retries",
    "retry_settings.max_retries": "max_retries",
    "timeout": "timeout",
    "retry_settings.timeout": "timeout",
    "resource_monitor_interval": "resource_monitor_interval",
}


@dataclass(frozen=True)
class MiniBatchSize:
    """A count of files or rows, or (tabular input only) a size in bytes."""

    count: int | None = None
    size_bytes: int | None = None

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.size_bytes}B"


@dataclass(frozen=True)
class Settings:
    """The settings one job runs with (DESIGN section 1 names and defaults)."""

    mini_batch_size: MiniBatchSize = MiniBatchSize(count=10)
    instance_count: int = 1
    max_concurrency_per_instance: int = 1
    output_action: str = "append_row"
    output_file_name: str = "predictions.csv"
    max_retries: int = 3
    timeout: float = 30
    error_threshold: int = -1
    mini_batch_error_threshold: int = -1
    logging_level: str = "info"
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    resource_monitor_interval: float = 600

    @property
    def tries(self) -> int:
        """Attempts one mini-batch gets; max_retries 0 still runs it once."""
        return max(1, self.max_retries)

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["mini_batch_size"] = str(self.mini_batch_size)
        values["environment_variables"] = dict(self.environment_variables)
        return values


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
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SpecError(f"cannot read deployment file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"deployment file {path} is not valid YAML: {exc}") from exc
    return parse_deployment(data, Path(path).parent, resolve_reference)


def parse_deployment(
    data: Any, base_dir: Path, resolve_reference: ReferenceResolver | None = None
) -> DeploymentSpec:
    """Validate a deployment given as a mapping (either Azure shape)."""
    if not isinstance(data, Mapping):
        raise SpecError("a deployment must be a YAML mapping of fields")
    _refuse_unknown(data, TOP_LEVEL_FIELDS, "")
    raw_settings = {key: data[key] for key in SETTING_FIELDS if key in data}
    nested = data.get("settings") or {}
    if not isinstance(nested, Mapping):
        raise SpecError("settings: must be a mapping of setting fields")
    _refuse_unknown(nested, SETTING_FIELDS, "settings.")
    raw_settings.update(nested)
    resources = data.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise SpecError("resources: must be a mapping such as {instance_count: 1}")
    _refuse_unknown(resources, ("instance_count", "properties"), "resources.")
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


def build_settings(raw: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Validate raw setting values (YAML shape) on top of `base` (defaults)."""
    values: dict[str, Any] = {}
    raw = dict(raw)
    retry = raw.pop("retry_settings", None)
    if retry is not None:
        if not isinstance(retry, Mapping):
            raise SpecError("retry_settings: must be a mapping {max_retries, timeout}")
        _refuse_unknown(retry, ("max_retries", "timeout"), "retry_settings.")
        raw.update(retry)
    for key, value in raw.items():
        values[key] = _convert_setting(key, value)
    return dataclasses.replace(base or Settings(), **values)


def apply_overrides(
    spec: DeploymentSpec, overrides: Mapping[str, Any]
) -> DeploymentSpec:
    """Return `spec` with per-job overrides such as {"mini_batch_size": "5"}."""
    raw = {}
    for key, value in overrides.items():
        if key not in OVERRIDABLE:
            raise SpecError(
                f"{key}: cannot be overridden for one job",
                hint=f"allowed: {', '.join(OVERRIDABLE)}{_close(key, OVERRIDABLE)}",
            )
        raw[OVERRIDABLE[key]] = value
    return dataclasses.replace(spec, settings=build_settings(raw, spec.settings))


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Parse `key=value` strings from `--set` into a mapping."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"--set {pair!r}: expected key=value, e.g. mini_batch_size=5"
            )
        result[key.strip()] = value.strip()
    return result


def parse_size(text: str) -> int | None:
    """`10MB` -> bytes; None when `text` is not a size."""
    match = _SIZE_RE.match(text)
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _convert_setting(key: str, value: Any) -> Any:
    if key == "mini_batch_size":
        return _mini_batch_size(value)
    if key in ("instance_count", "max_concurrency_per_instance"):
        return _integer(key, value, minimum=1)
    if key == "max_retries":
        return _integer(key, value, minimum=0)
    if key in ("error_threshold", "mini_batch_error_threshold"):
        return _integer(key, value, minimum=-1)
    if key == "timeout":
        return _number(key, value, minimum_exclusive=0)
    if key == "resource_monitor_interval":
        return _number(key, value, minimum_exclusive=None)
    if key == "output_action":
        return _choice(key, value, OUTPUT_ACTIONS)
    if key == "logging_level":
        return _choice(key, str(value).lower(), LOGGING_LEVELS)
    if key == "output_file_name":
        return _file_name(value)
    if key == "environment_variables":
        return _environment_variables(value)
    raise SpecError(
        f"{key}: unknown setting", hint=f"allowed: {', '.join(SETTING_FIELDS)}"
    )


def _mini_batch_size(value: Any) -> MiniBatchSize:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return MiniBatchSize(count=value)
    if isinstance(value, str):
        if value.strip().isdigit() and int(value) >= 1:
            return MiniBatchSize(count=int(value))
        size = parse_size(value)
        if size:
            return MiniBatchSize(size_bytes=size)
    raise SpecError(
        f"mini_batch_size: must be a whole number >= 1 (files, or rows of tabular"
        f" input) or a size such as 10MB for tabular input, not {value!r}"
    )


def _integer(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"{key}: must be a whole number >= {minimum}, not {value!r}")
    return value


def _number(key: str, value: Any, minimum_exclusive: float | None) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number != number or number < 0:
        raise SpecError(f"{key}: must be a number of seconds >= 0, not {value!r}")
    if minimum_exclusive is not None and number <= minimum_exclusive:
        raise SpecError(f"{key}: must be a number of seconds > 0, not {value!r}")
    return number


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(f"{key}: must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _file_name(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or "/" in value
        or "\\" in value
        or value in (".", "..")
    ):
        raise SpecError(
            f"output_file_name: must be a plain file name such as predictions.csv,"
            f" not {value!r}"
        )
    return value


def _environment_variables(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k for k in value
    ):
        raise SpecError("environment_variables: must be a mapping of NAME: value")
    return {k: "" if v is None else str(v) for k, v in value.items()}


def _parse_model(
    value: Any, base_dir: Path, resolve_reference: ReferenceResolver | None
) -> ModelSpec | None:
    if value is None:
        return None
    declared = None
    if isinstance(value, str):
        path = _resolve_reference("model", value, resolve_reference)
    elif isinstance(value, Mapping):
        _refuse_unknown(
            value, ("path", "type", "name", "version", "description", "tags"), "model."
        )
        if not value.get("path"):
            raise SpecError("model.path: an inline model needs the folder of its files")
        path = (base_dir / str(value["path"])).resolve()
        declared = value.get("type")
        if declared is not None:
            _choice("model.type", declared, MODEL_TYPES)
    else:
        raise SpecError(
            "model: must be a reference such as azureml:name:version or a mapping"
            " with path (and optional type)"
        )
    if not path.exists():
        raise SpecError(f"model.path: {path} does not exist")
    return ModelSpec(path=path, type=detect_model_type(path, declared))


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
    _refuse_unknown(value, ("code", "scoring_script"), "code_configuration.")
    if not value.get("code") or not value.get("scoring_script"):
        raise SpecError(
            "code_configuration: needs both code (a folder) and scoring_script"
            " (a file name in it)"
        )
    code = str(value["code"])
    if code.startswith("azureml:"):
        raise SpecError("code_configuration.code: must be a folder path")
    code_dir = (base_dir / code).resolve()
    script = str(value["scoring_script"])
    if not code_dir.is_dir():
        raise SpecError(f"code_configuration.code: {code_dir} is not a folder")
    if not (code_dir / script).is_file():
        raise SpecError(
            f"code_configuration.scoring_script: {script} not found in {code_dir}"
        )
    return code_dir, script


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
    _refuse_unknown(
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
        from .environments import read_conda_pip_requirements

        conda_file = (base_dir / str(value["conda_file"])).resolve()
        conda_dir = conda_file.parent
        requirements += [
            _resolve_requirement(line, conda_dir)
            for line in read_conda_pip_requirements(conda_file)
        ]
    return EnvironmentSpec(python_requirements=tuple(requirements))


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


def _refuse_unknown(
    data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str
) -> None:
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"{prefix}{key}: unknown field",
                hint=f"allowed: {', '.join(allowed)}{_close(str(key), allowed)}",
            )


def _close(name: str, allowed: Any) -> str:
    matches = difflib.get_close_matches(name, list(allowed), n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""
