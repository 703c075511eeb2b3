"""Properties of spec validation: any input gives valid settings or a SpecError.

Whatever a YAML file, a `--set` list or an invocation holds, the engine either
returns settings every later stage can trust, or refuses with a SpecError whose
message starts with the field at fault (DESIGN section 5: "bad YAML, unknown
field, bad value"). Any other exception would surface as a traceback or a 500.
"""

from __future__ import annotations

import copy
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scoring_engine import SpecError, apply_overrides, load_deployment, parse_deployment
from scoring_engine.config import (
    LOGGING_LEVELS,
    OUTPUT_ACTIONS,
    OVERRIDABLE,
    SETTING_FIELDS,
    Settings,
    build_settings,
    parse_assignments,
    parse_size,
)
from scoring_engine.deployment import TOP_LEVEL_FIELDS, DeploymentSpec
from tests.conftest import SCRIPTS

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Where a SpecError may start: the field at fault, or what a deployment must be.
FIELD_NAMES = (
    *TOP_LEVEL_FIELDS,
    *OVERRIDABLE,
    "retry_settings",
    "instance_count",
    "max_retries",
    "timeout",
    "--set",
)
# Refusals about the whole file or deployment rather than one field in it.
WHOLE_REFUSALS = (
    "a deployment must be",
    "deployment file ",
    "cannot read deployment file ",
)
UNKNOWN_KEY = re.compile(r": (unknown field|unknown setting|cannot be overridden)")

# Values chosen to sit on the edges validators get wrong.
TRICKY_TEXT = st.sampled_from(
    [
        "", " ", "0", "1", "-1", "-2", " 5 ", "+3", "1.5", "1e3", "nan", "inf", "-inf",
        "10MB", "0MB", "0.4B", "1.5 kb", "10 XB", "9" * 400 + "MB", "1" * 5000,
        "²", "¹⁰", "١٠", "٣MB", "５", "\x00", "a\x00b", "\ud800", "..", ".", "/",
        "a/b", "a\\b", "/etc/passwd", "../outside", "x" * 300, "é" * 200,
        "predictions.csv", " predictions.csv", "line\nbreak", "\t", "DEBUG", "Info",
        "append_row", "summary_only", "A=B", "=", "azureml:model:1", "model@latest",
    ]
)  # fmt: skip
TRICKY_NUMBER = st.sampled_from(
    [
        0, 1, -1, -2, 2**31, 2**63, -(2**63), 10**20, 10**400, -(10**400),
        0.0, -0.0, 0.5, 1.0, 1e-300, 1e308, float("inf"), float("-inf"),
        float("nan"), True, False,
    ]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | TRICKY_TEXT
    | TRICKY_NUMBER
)
KEYS = st.text(max_size=12) | st.integers() | st.booleans() | st.none() | TRICKY_TEXT
YAML_DATA = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=12,
)
SETTING_KEYS = (
    st.sampled_from([*SETTING_FIELDS, *OVERRIDABLE, "retry_settings.timeout"]) | KEYS
)

# Every field path of a deployment, in both Azure shapes.
FIELD_PATHS = [
    *[(name,) for name in TOP_LEVEL_FIELDS],
    *[("settings", name) for name in SETTING_FIELDS],
    ("retry_settings", "max_retries"),
    ("retry_settings", "timeout"),
    ("settings", "retry_settings", "max_retries"),
    ("settings", "retry_settings", "timeout"),
    ("resources", "instance_count"),
    ("resources", "properties"),
    ("model", "path"),
    ("model", "type"),
    ("code_configuration", "code"),
    ("code_configuration", "scoring_script"),
    ("environment", "python_requirements"),
    ("environment", "conda_file"),
    ("environment_variables", "NAME"),
    ("settings", "environment_variables", "NAME"),
    # Wrong nesting: fields in a place the other shape or another block owns.
    ("max_retries",),
    ("timeout",),
    ("instance_count",),
    ("settings", "instance_count"),
    ("settings", "settings"),
    ("settings", "resources"),
    ("retry_settings", "retry_settings"),
    ("resources", "resources", "instance_count"),
    ("model", "model", "path"),
]
FIELD_VALUES = YAML_DATA | TRICKY_TEXT | TRICKY_NUMBER


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a deployment's code, model and conda file beside it."""
    folder = tmp_path_factory.mktemp("deployment")
    shutil.copytree(SCRIPTS, folder / "code")
    (folder / "model").mkdir()
    (folder / "model" / "weights.txt").write_text("1\n")
    (folder / "env.yml").write_text("dependencies:\n  - pip:\n    - pandas\n")
    (folder / "bad-env.yml").write_text("dependencies: [2001-13-45]\n")
    return folder


def valid_deployment(shape: str) -> dict[str, Any]:
    """A deployment the engine accepts, in the older or the newer Azure shape."""
    settings_ = {
        "mini_batch_size": 5,
        "output_action": "append_row",
        "retry_settings": {"max_retries": 2, "timeout": 10},
        "logging_level": "info",
        "environment_variables": {"A": "1"},
    }
    data: dict[str, Any] = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/batchDeployment.json",
        "name": "blue",
        "endpoint_name": "scorer",
        "model": {"path": "./model"},
        "code_configuration": {"code": "./code", "scoring_script": "ok.py"},
        "environment": {"python_requirements": [], "conda_file": "env.yml"},
        "resources": {"instance_count": 2},
    }
    if shape == "newer":
        data.update(type="model", settings=settings_)
    else:
        data.update(settings_)
    return data


@st.composite
def mutated_deployments(draw: st.DrawFn) -> dict[str, Any]:
    data = valid_deployment(draw(st.sampled_from(["older", "newer"])))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(FIELD_PATHS))
        action = draw(st.sampled_from(["set", "set", "delete", "unknown"]))
        parent = data
        for part in path[:-1]:
            child = parent.get(part)
            if not isinstance(child, dict):
                child = parent[part] = {}
            parent = child
        if action == "delete":
            parent.pop(path[-1], None)
        elif action == "unknown":
            parent[draw(KEYS)] = draw(FIELD_VALUES)
        else:
            parent[path[-1]] = draw(FIELD_VALUES)
    return data


def is_plain_file_name(name: Any) -> bool:
    if not isinstance(name, str) or name.strip() in ("", ".", ".."):
        return False
    if any(char in name for char in "/\\") or any(ord(c) < 32 for c in name):
        return False
    try:
        return len(name.encode()) <= 255
    except UnicodeEncodeError:
        return False


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def assert_trustworthy(settings_: Settings) -> None:
    """The invariants every later stage (partition, agents, job folder) relies on."""
    size = settings_.mini_batch_size
    assert (is_whole(size.count) and size.count >= 1 and size.size_bytes is None) or (
        size.count is None and is_whole(size.size_bytes) and size.size_bytes > 0
    ), size
    assert is_whole(settings_.instance_count) and settings_.instance_count >= 1
    assert is_whole(settings_.max_concurrency_per_instance)
    assert settings_.max_concurrency_per_instance >= 1
    assert is_whole(settings_.max_retries) and settings_.max_retries >= 0
    assert settings_.tries >= 1
    assert isinstance(settings_.timeout, int | float)
    assert 0 < settings_.timeout < math.inf
    assert is_whole(settings_.error_threshold) and settings_.error_threshold >= -1
    assert is_whole(settings_.mini_batch_error_threshold)
    assert settings_.mini_batch_error_threshold >= -1
    assert settings_.logging_level in LOGGING_LEVELS
    assert settings_.output_action in OUTPUT_ACTIONS
    assert is_plain_file_name(settings_.output_file_name), settings_.output_file_name
    interval = settings_.resource_monitor_interval
    assert isinstance(interval, int | float) and math.isfinite(interval)
    assert interval >= 0
    for name, value in settings_.environment_variables.items():
        assert isinstance(name, str) and name and "=" not in name and "\0" not in name
        assert isinstance(value, str) and "\0" not in value
        name.encode(), value.encode()  # a process environment holds bytes
    # The studio stores as_dict() and builds the settings again for each job.
    assert build_settings(settings_.as_dict()) == settings_


def assert_names_a_field(error: SpecError) -> None:
    message = error.message
    assert message and isinstance(message, str)
    assert (
        any(message.startswith(f"{name}:") for name in FIELD_NAMES)
        or any(message.startswith(f"{name}.") for name in FIELD_NAMES)
        or message.startswith(WHOLE_REFUSALS)
        or UNKNOWN_KEY.search(message)
    ), message


def assert_valid_spec(spec: DeploymentSpec) -> None:
    assert_trustworthy(spec.settings)
    assert spec.model is not None or spec.code_dir is not None
    if spec.model is not None:
        assert spec.model.path.exists()
    if spec.code_dir is not None:
        assert spec.scoring_script and (spec.code_dir / spec.scoring_script).is_file()
        assert (
            (spec.code_dir / spec.scoring_script)
            .resolve()
            .is_relative_to(spec.code_dir)
        )
    if not (spec.model is not None and spec.model.is_mlflow):
        assert spec.code_dir is not None and spec.environment is not None


def parse_or_refuse(data: Any, base_dir: Path) -> DeploymentSpec | None:
    try:
        spec = parse_deployment(data, base_dir)
    except SpecError as exc:
        assert_names_a_field(exc)
        return None
    assert_valid_spec(spec)
    return spec


@pytest.mark.parametrize("shape", ["older", "newer"])
def test_the_unmutated_deployment_is_accepted_in_both_shapes(shape, base_dir):
    spec = parse_or_refuse(valid_deployment(shape), base_dir)

    assert spec is not None and spec.settings.instance_count == 2
    assert spec.environment.python_requirements == ("pandas",)


@PROPERTY
@given(data=YAML_DATA)
def test_any_yaml_data_gives_a_valid_deployment_or_a_spec_error(data, base_dir):
    parse_or_refuse(data, base_dir)


@PROPERTY
@given(data=mutated_deployments())
@example(data={**valid_deployment("older"), "timeout": 1})
@example(data={**valid_deployment("older"), "model": {"path": "./model", "type": []}})
@example(data={**valid_deployment("older"), "environment": {"conda_file": "a\x00"}})
@example(
    data={
        **valid_deployment("older"),
        "code_configuration": {"code": "./code", "scoring_script": "a\x00"},
    }
)
def test_a_mutated_deployment_is_valid_or_refused_naming_the_field(data, base_dir):
    parse_or_refuse(copy.deepcopy(data), base_dir)


@PROPERTY
@given(raw=st.dictionaries(SETTING_KEYS, FIELD_VALUES, max_size=5))
@example(raw={"timeout": 10**400})
@example(raw={"retry_settings": {"timeout": "1e400"}})
@example(raw={"mini_batch_size": "²"})
@example(raw={5: 1})
def test_build_settings_gives_trustworthy_settings_or_a_spec_error(raw):
    try:
        built = build_settings(raw)
    except SpecError as exc:
        assert_names_a_field(exc)
    else:
        assert_trustworthy(built)


@PROPERTY
@given(
    overrides=st.dictionaries(
        st.sampled_from(sorted(OVERRIDABLE)) | KEYS, FIELD_VALUES, max_size=4
    )
)
@example(overrides={5: "1"})
@example(overrides={None: "1"})
@example(overrides={"timeout": 10**400})
def test_apply_overrides_gives_trustworthy_settings_or_a_spec_error(
    overrides, base_dir
):
    spec = parse_deployment(valid_deployment("newer"), base_dir)
    try:
        overridden = apply_overrides(spec, overrides)
    except SpecError as exc:
        assert_names_a_field(exc)
    else:
        assert_trustworthy(overridden.settings)
        assert overridden.model == spec.model and overridden.code_dir == spec.code_dir


@PROPERTY
@given(pairs=st.lists(st.text(max_size=20) | TRICKY_TEXT, max_size=5))
def test_parse_assignments_gives_named_values_or_a_spec_error(pairs):
    try:
        parsed = parse_assignments(pairs)
    except SpecError as exc:
        assert exc.message.startswith("--set ")
        assert "expected key=value" in exc.message
    else:
        assert all(key and key == key.strip() for key in parsed)
        assert len(parsed) <= len(pairs)


@PROPERTY
@given(text=st.text(max_size=30) | TRICKY_TEXT)
@example(text="9" * 400 + "MB")
@example(text="٣MB")
def test_parse_size_gives_bytes_or_none(text):
    size = parse_size(text)

    assert size is None or (is_whole(size) and size >= 0)


YAML_TOKENS = st.sampled_from(
    [
        "{", "}", "[", "]", ":", ": ", "- ", ",", " ", "\n", "\n  ", "'", '"', "#",
        "&a ", "*a", "<<: ", "? ", "!!binary ", "!!float ", "!!int ", "!!timestamp ",
        "!!python/object:os.system ", "!!set ", "%YAML 1.1\n", "---\n", "...\n",
        "2001-13-45", "2001-02-30", "1" * 5000, "x", "1", "-1", "0.5", ".inf",
        "mini_batch_size", "settings", "retry_settings", "timeout", "model",
        "code_configuration", "environment", "resources", "instance_count", "\t",
        "\x00", "\ufeff", "\x85",
    ]
)  # fmt: skip
YAML_TEXT = (
    st.text(max_size=60)
    | st.lists(YAML_TOKENS, max_size=25).map("".join)
    | mutated_deployments().map(
        lambda data: yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    )
)


@PROPERTY
@given(content=YAML_TEXT | st.binary(max_size=60))
@example(content="a: 2001-13-45")
@example(content="timeout: !!float x")
@example(content="timeout: " + "1" * 5000)
@example(content="[" * 5000)
@example(content="timeout: !!float")
@example(content="!!int")
@example(content="a: !!timestamp x")
@example(content=b"\xff\xfe mini_batch_size: 5")
def test_load_deployment_raises_only_spec_errors(content, base_dir):
    path = base_dir / "deployment.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        spec = load_deployment(path)
    except SpecError as exc:
        assert_names_a_field(exc)
    else:
        assert_valid_spec(spec)


def test_load_deployment_refuses_a_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read deployment file"):
        load_deployment(tmp_path / "missing.yml")


# What the properties found (kept as explicit cases): values that used to raise
# another exception, or pass validation and fail the job later.
FOUND = {
    "a timeout past float": (
        {"retry_settings": {"max_retries": 1, "timeout": 10**400}},
        "timeout: must be a number of seconds >= 0, not 1000000",
    ),
    "a superscript digit": (
        {"mini_batch_size": "²"},
        "mini_batch_size: must be a whole number >= 1",
    ),
    "a size past float": ({"mini_batch_size": "9" * 400 + "MB"}, "mini_batch_size:"),
    "more digits than int() reads": (
        {"error_threshold": "1" * 5000},
        "error_threshold: must be a whole number >= -1, not '1111",
    ),
    "NUL in the output file name": (
        {"output_file_name": "a\x00b"},
        "output_file_name: must be a plain file name",
    ),
    "an output file name past NAME_MAX": (
        {"output_file_name": "x" * 256},
        "output_file_name: must be a plain file name",
    ),
    "'=' in a variable name": (
        {"environment_variables": {"A=B": "1"}},
        "environment_variables: 'A=B' is not a variable name",
    ),
    "NUL in a variable value": (
        {"environment_variables": {"A": "\x00"}},
        "environment_variables: the value of A must be text",
    ),
    "a mapping as a variable value": (
        {"environment_variables": {"A": {"B": 1}}},
        "environment_variables: the value of A must be text",
    ),
    "NUL in the model path": (
        {"model": {"path": "a\x00b"}},
        "model.path: 'a\\x00b' holds a NUL character",
    ),
    "a model path too long": (
        {"model": {"path": "x" * 5000}},
        "model.path: cannot use",
    ),
    "a list as the model path": (
        {"model": {"path": ["model"]}},
        "model.path: must be a path, not ['model']",
    ),
    "a scoring script outside the code": (
        {"code_configuration": {"code": "./code", "scoring_script": "/etc/hostname"}},
        "code_configuration.scoring_script: must be a file in the code folder",
    ),
    "a conda file that is a folder": (
        {"environment": {"conda_file": "code"}},
        "environment.conda_file: conda file code cannot be read",
    ),
    "a conda file with a bad date": (
        {"environment": {"conda_file": "bad-env.yml"}},
        "environment.conda_file: conda file bad-env.yml is not valid YAML",
    ),
}


@pytest.mark.parametrize("change, message", FOUND.values(), ids=FOUND)
def test_it_refuses_what_would_fail_later_naming_the_field(change, message, base_dir):
    with pytest.raises(SpecError) as refused:
        parse_deployment({**valid_deployment("older"), **change}, base_dir)

    assert refused.value.message.startswith(message), refused.value.message


@pytest.mark.parametrize(
    "text, problem",
    [
        ("timeout: 2001-13-45", "month must be in 1..12"),
        ("timeout: !!float x", "could not convert string to float"),
        ("[" * 5000, "it is nested too deeply"),
    ],
)
def test_it_refuses_yaml_that_pyyaml_cannot_construct(text, problem, tmp_path):
    path = tmp_path / "deployment.yml"
    path.write_text(text)

    with pytest.raises(SpecError, match="is not valid YAML: .*" + problem):
        load_deployment(path)


def test_it_refuses_a_deployment_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "deployment.yml"
    path.write_bytes(b"name: caf\xe9\n")

    with pytest.raises(SpecError, match="is not UTF-8 text"):
        load_deployment(path)


def test_apply_overrides_names_a_key_that_is_not_text(base_dir):
    spec = parse_deployment(valid_deployment("newer"), base_dir)

    with pytest.raises(SpecError, match="^5: cannot be overridden for one job"):
        apply_overrides(spec, {5: "1"})
