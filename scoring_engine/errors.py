"""Engine exceptions: each carries the message a user reads and maybe a hint."""

from __future__ import annotations

import yaml

# Besides YAMLError, PyYAML's constructors leak ValueError, IndexError,
# AttributeError... for malformed scalars (`2001-13-45`, `!!float x`, an empty
# `!!int`, `!!timestamp x`), and its composer recurses once per nesting level:
# whatever safe_load raises on untrusted text means "not valid YAML".
YAML_FAILURES = (Exception,)


def yaml_problem(exc: BaseException) -> str:
    """Why PyYAML refused a text, in one phrase."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    if isinstance(exc, yaml.YAMLError):
        return str(exc)
    return f"a malformed value ({type(exc).__name__}: {exc})"


class EngineError(Exception):
    """Base of every error the engine reports to a user."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class SpecError(EngineError):
    """A deployment spec, setting or override is malformed; nothing was started."""


class InputError(EngineError):
    """The job's input is missing, empty or of an unsupported form."""


class JobFolderError(EngineError):
    """The job folder cannot be used (it already holds a job's output)."""


class EnvironmentBuildError(EngineError):
    """Building the scoring environment failed; the build log says why."""

    def __init__(self, message: str, log_path: str = "", hint: str = "") -> None:
        super().__init__(message, hint)
        self.log_path = log_path


class ScriptError(EngineError):
    """The scoring script could not be loaded or its init() failed."""
