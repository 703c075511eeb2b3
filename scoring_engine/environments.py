"""The Python interpreter a scoring process runs under: cached, uv-built virtualenvs."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from scoring_engine.errors import (
    YAML_FAILURES,
    EnvironmentBuildError,
    SpecError,
    yaml_problem,
)

# Written inside the venv as the very last build step; a folder without it is junk.
READY_MARKER = ".batch-studio-ready"
REQUIREMENTS_NAME = "batch-studio-requirements.txt"
_TMP_PREFIX = ".building-"
_MAX_SUMMARY = 500

# pip's rule: "#" starts a comment only at line start or after whitespace, so the
# "#egg=" / "#sha256=" fragments of URLs survive.
_COMMENT = re.compile(r"(^|\s)#.*$")


def read_conda_pip_requirements(conda_file: Path) -> list[str]:
    """Return the pip section of a conda environment file; conda packages are
    ignored because scoring environments are plain virtualenvs."""
    name = conda_file.name
    try:
        text = conda_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise SpecError(
            f"conda file {name} cannot be read: {reason}",
            hint="check the conda_file path and that it is a text YAML file",
        ) from exc
    try:
        data = yaml.safe_load(text)
    except YAML_FAILURES as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or yaml_problem(exc)
        raise SpecError(
            f"conda file {name} is not valid YAML{where}: {problem}",
            hint="fix the YAML syntax of the conda file",
        ) from exc

    if data is None:
        raise SpecError(
            f"conda file {name} is empty",
            hint="a conda file is a mapping with a dependencies: list",
        )
    if not isinstance(data, dict):
        raise SpecError(
            f"conda file {name} must be a mapping at the top level, "
            f"not {_yaml_type(data)}",
            hint="a conda file is a mapping with a dependencies: list",
        )
    dependencies = data.get("dependencies")
    if dependencies is None:
        return []
    if not isinstance(dependencies, list):
        raise SpecError(
            f"conda file {name}: dependencies must be a list, "
            f"not {_yaml_type(dependencies)}",
        )

    requirements: list[str] = []
    for index, entry in enumerate(dependencies, start=1):
        if isinstance(entry, str):
            continue  # a conda package such as python=3.11 or pip
        if not isinstance(entry, dict) or set(entry) != {"pip"}:
            raise SpecError(
                f"conda file {name}: dependency #{index} must be a package name "
                f"or a {{pip: [...]}} entry, not {_describe(entry)}",
            )
        pip_section = entry["pip"]
        if pip_section is None:
            continue
        if not isinstance(pip_section, list) or not all(
            isinstance(line, str) for line in pip_section
        ):
            raise SpecError(
                f"conda file {name}: the pip entry must be a list of requirement "
                "strings",
                hint="quote requirements that YAML would read as numbers or maps",
            )
        requirements.extend(pip_section)
    return requirements


def normalize_requirements(requirements: Sequence[str]) -> list[str]:
    """Strip whitespace, comments and blank lines; order is kept because option
    lines such as --index-url may depend on it."""
    lines: list[str] = []
    for raw in requirements:
        for line in raw.splitlines():
            line = _COMMENT.sub("", line).strip()
            if line:
                lines.append(line)
    return lines


def environment_hash(
    requirements: Sequence[str], *, python_version: str | None = None
) -> str:
    """Return a stable short hex id of (normalized requirements, base interpreter).

    `python_version` identifies the base interpreter; it defaults to the engine's
    own one, which is what `prepare_python` uses unless given another python.
    """
    if python_version is None:
        python_version = _python_identity(sys.executable)
    payload = json.dumps(
        {
            "python": python_version,
            "requirements": normalize_requirements(requirements),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def prepare_python(
    requirements: Sequence[str],
    cache_dir: Path,
    build_log: Path,
    *,
    base_python: str = sys.executable,
    offline: bool = False,
) -> str:
    """Return the python executable to run scoring processes with.

    No requirements means the base interpreter itself: nothing is built or written.
    Otherwise the virtualenv for the requirements' hash is built once under
    `cache_dir` and reused. Relative paths in requirement lines are passed to uv
    unchanged, which resolves them against the current working directory.
    `offline` forbids uv from using the network (UV_OFFLINE=1).
    """
    lines = normalize_requirements(requirements)
    if not lines:
        return base_python

    build_log.parent.mkdir(parents=True, exist_ok=True)
    with build_log.open("a", encoding="utf-8") as log:
        env_id = environment_hash(lines, python_version=_python_identity(base_python))
        cache_dir.mkdir(parents=True, exist_ok=True)
        final = cache_dir / env_id

        if _is_ready(final):
            _log(log, f"using cached environment {env_id} at {final}")
            return str(_python_in(final))

        with _build_lock(cache_dir / f".{env_id}.lock", log, env_id):
            # Another builder may have finished while we waited for the lock.
            if _is_ready(final):
                _log(log, f"using cached environment {env_id} at {final}")
                return str(_python_in(final))
            _discard_leftovers(cache_dir, env_id, final, log)
            return _build(lines, env_id, final, base_python, offline, log, build_log)


def _build(
    lines: list[str],
    env_id: str,
    final: Path,
    base_python: str,
    offline: bool,
    log: IO[str],
    build_log: Path,
) -> str:
    started = time.monotonic()
    _log(log, f"building environment {env_id} from requirements:")
    log.write("".join(f"    {line}\n" for line in lines))
    # Built next to the final folder so the rename stays on one filesystem.
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{env_id}-", dir=final.parent))
    try:
        uv = _find_uv()
        env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
        if offline:
            env["UV_OFFLINE"] = "1"
        reqfile = tmp / REQUIREMENTS_NAME
        # --relocatable: the venv is renamed after the build, and console-script
        # shebangs would otherwise point at the temporary folder.
        _run(
            [uv, "venv", "--relocatable", "--python", base_python, str(tmp)],
            env,
            log,
            build_log,
        )
        reqfile.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _run(
            [
                uv,
                "pip",
                "install",
                "--python",
                str(_python_in(tmp)),
                "-r",
                str(reqfile),
            ],
            env,
            log,
            build_log,
            # The file is deleted with the failed build; don't send users to it.
            rename={f"`{reqfile}`": "the requirement list"},
        )
        (tmp / READY_MARKER).write_text(
            json.dumps(
                {"hash": env_id, "base_python": base_python, "requirements": lines},
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        try:
            os.rename(tmp, final)
        except OSError:
            # Lost a race against a builder that did not hold our lock.
            if not _is_ready(final):
                raise
            _log(log, f"environment {env_id} was built concurrently; using it")
            shutil.rmtree(tmp, ignore_errors=True)
            return str(_python_in(final))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    elapsed = time.monotonic() - started
    _log(log, f"environment {env_id} ready at {final} ({elapsed:.1f}s)")
    return str(_python_in(final))


def _run(
    command: list[str],
    env: dict[str, str],
    log: IO[str],
    build_log: Path,
    rename: dict[str, str] | None = None,
) -> None:
    _log(log, "$ " + " ".join(command))
    try:
        completed = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            check=False,
        )
    except OSError as exc:
        _log(log, f"could not run {command[0]}: {exc}")
        raise _build_error(f"could not run uv: {exc}", build_log) from exc
    log.write(completed.stdout)
    if completed.stdout and not completed.stdout.endswith("\n"):
        log.write("\n")
    if completed.returncode != 0:
        _log(log, f"exit status {completed.returncode}")
        summary = _summarize(completed.stdout)
        for before, after in (rename or {}).items():
            summary = summary.replace(before, after)
        raise _build_error(summary, build_log)
    log.flush()


def _summarize(output: str) -> str:
    """Pick the line of uv's output that says what went wrong."""
    lines = [line.strip() for line in output.splitlines()]
    error_at = max(
        (i for i, line in enumerate(lines) if line.startswith("error:")), default=None
    )
    if error_at is not None:
        summary = lines[error_at].removeprefix("error:").strip()
        causes = [
            line.removeprefix("cause:").strip()
            for line in lines[error_at + 1 :]
            if line.startswith("cause:")
        ]
        if causes:
            summary = f"{summary}: {causes[-1]}"
    else:
        meaningful = [line for line in lines if line and not line.startswith("hint:")]
        summary = meaningful[-1] if meaningful else "uv exited without output"
    if len(summary) > _MAX_SUMMARY:
        summary = summary[: _MAX_SUMMARY - 3] + "..."
    return summary


def _build_error(detail: str, build_log: Path) -> EnvironmentBuildError:
    return EnvironmentBuildError(
        f"building the scoring environment failed: {detail}",
        log_path=str(build_log),
        hint=f"open {build_log} for the full pip output; "
        "fix python_requirements / conda_file",
    )


@contextmanager
def _build_lock(lock_path: Path, log: IO[str], env_id: str) -> Iterator[None]:
    # flock locks belong to the open file description, so this serializes both
    # other processes and other threads of this one (each opens its own).
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(log, f"waiting for a concurrent build of environment {env_id}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _discard_leftovers(cache_dir: Path, env_id: str, final: Path, log: IO[str]) -> None:
    # Only called under the hash's lock, so no live builder owns these folders.
    leftovers = list(cache_dir.glob(f"{_TMP_PREFIX}{env_id}-*"))
    if final.exists():
        leftovers.append(final)
    for path in leftovers:
        _log(log, f"removing unfinished environment folder {path}")
        shutil.rmtree(path, ignore_errors=True)


def _is_ready(venv: Path) -> bool:
    return (venv / READY_MARKER).is_file() and _python_in(venv).exists()


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def _python_identity(python: str) -> str:
    """Version and location of an interpreter: a venv is only valid for its base."""
    if python == sys.executable:
        return f"{sys.version} @ {os.path.realpath(sys.executable)}"
    try:
        completed = subprocess.run(
            [
                python,
                "-c",
                "import os, sys; "
                "print(f'{sys.version} @ {os.path.realpath(sys.executable)}')",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentBuildError(
            f"the base python {python} cannot be run: {exc}",
            hint="check the interpreter configured for scoring environments",
        ) from exc
    return completed.stdout.strip()


def _find_uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise EnvironmentBuildError(
                "building the scoring environment failed: uv is not installed",
                hint="install uv (pip install uv) on the machine running jobs",
            ) from None
        return found


def _log(log: IO[str], message: str) -> None:
    log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")
    log.flush()


def _yaml_type(value: Any) -> str:
    return {list: "a list", str: "a string", dict: "a mapping"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping with keys " + ", ".join(sorted(map(str, value)))
    return _yaml_type(value)
