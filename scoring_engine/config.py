"""Job settings (DESIGN section 1 names and defaults): validate, override."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError

OUTPUT_ACTIONS = ("append_row", "summary_only")
LOGGING_LEVELS = ("debug", "info", "warning", "error", "critical")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*$", re.IGNORECASE)
_WHOLE_RE = re.compile(r"\s*-?\d+\s*")
# The longest file name most filesystems take (NAME_MAX), in bytes.
_NAME_MAX = 255
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


def build_settings(raw: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Validate raw setting values (YAML shape) on top of `base` (defaults)."""
    values: dict[str, Any] = {}
    raw = dict(raw)
    retry = raw.pop("retry_settings", None)
    if retry is not None:
        if not isinstance(retry, Mapping):
            raise SpecError("retry_settings: must be a mapping {max_retries, timeout}")
        refuse_unknown(retry, ("max_retries", "timeout"), "retry_settings.")
        raw.update(retry)
    for key, value in raw.items():
        values[key] = _convert_setting(key, value)
    return dataclasses.replace(base or Settings(), **values)


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
    """`10MB` -> bytes; None when `text` is not a size (or too large to be one)."""
    match = _SIZE_RE.match(text)
    if not match:
        return None
    size = float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    return int(size) if math.isfinite(size) else None


def show_value(value: Any, limit: int = 60) -> str:
    """A value as a refusal quotes it: its repr, shortened when long."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return "a number too large"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _whole_number(text: str) -> int | None:
    """`" 12 "` -> 12; None when `text` is not a whole number Python can read."""
    if not _WHOLE_RE.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than int() accepts from text
        return None


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
        return check_choice(key, value, OUTPUT_ACTIONS)
    if key == "logging_level":
        return check_choice(key, str(value).lower(), LOGGING_LEVELS)
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
        count = _whole_number(value)
        if count is not None and count >= 1:
            return MiniBatchSize(count=count)
        size = parse_size(value)
        if size:
            return MiniBatchSize(size_bytes=size)
    raise SpecError(
        f"mini_batch_size: must be a whole number >= 1 (files, or rows of tabular"
        f" input) or a size such as 10MB for tabular input, not {show_value(value)}"
    )


def _integer(key: str, value: Any, minimum: int) -> int:
    number = _whole_number(value) if isinstance(value, str) else value
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        raise SpecError(
            f"{key}: must be a whole number >= {minimum}, not {show_value(value)}"
        )
    return number


def _number(key: str, value: Any, minimum_exclusive: float | None) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise SpecError(
            f"{key}: must be a number of seconds >= 0, not {show_value(value)}"
        )
    if minimum_exclusive is not None and number <= minimum_exclusive:
        raise SpecError(
            f"{key}: must be a number of seconds > 0, not {show_value(value)}"
        )
    return number


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(
            f"{key}: must be one of {', '.join(allowed)}, not {show_value(value)}"
        )
    return value


def _file_name(value: Any) -> str:
    if not (isinstance(value, str) and _is_plain_name(value)):
        raise SpecError(
            f"output_file_name: must be a plain file name such as predictions.csv"
            f" (no folders, at most {_NAME_MAX} bytes), not {show_value(value)}"
        )
    return value


def _is_plain_name(name: str) -> bool:
    if name.strip() in ("", ".", "..") or "/" in name or "\\" in name:
        return False
    # Control characters (NUL above all) cannot be, or should not be, in a file name.
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return False
    try:
        return len(name.encode()) <= _NAME_MAX
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON \ud800 escape
        return False


def _environment_variables(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError("environment_variables: must be a mapping of NAME: value")
    return {
        _variable_name(name): _variable_value(name, raw) for name, raw in value.items()
    }


def _variable_name(name: Any) -> str:
    # A process environment cannot hold these; Popen would fail when the job starts.
    if not (
        isinstance(name, str)
        and name
        and "=" not in name
        and _is_environment_text(name)
    ):
        raise SpecError(
            f"environment_variables: {show_value(name)} is not a variable name;"
            " names are non-empty text without '=' or NUL characters"
        )
    return name


def _variable_value(name: str, raw: Any) -> str:
    text = None
    if raw is None:
        text = ""
    elif isinstance(raw, str | int | float):
        with contextlib.suppress(ValueError):  # an int past str()'s digit limit
            text = str(raw)
    if text is None or not _is_environment_text(text):
        raise SpecError(
            f"environment_variables: the value of {name} must be text, a number or"
            f" true/false, without NUL characters, not {show_value(raw)}"
        )
    return text


def _is_environment_text(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\0" not in text


def refuse_unknown(
    data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str
) -> None:
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"{prefix}{key}: unknown field",
                hint=f"allowed: {', '.join(allowed)}{close_match(str(key), allowed)}",
            )


def close_match(name: str, allowed: Any) -> str:
    matches = difflib.get_close_matches(str(name), list(allowed), n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""
