"""Tests for scoring_engine.environments: uv-built, cached scoring virtualenvs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import scoring_engine.environments as environments
from scoring_engine.environments import (
    READY_MARKER,
    environment_hash,
    normalize_requirements,
    prepare_python,
    read_conda_pip_requirements,
)
from scoring_engine.errors import EnvironmentBuildError, SpecError
from tests.factories import make_wheel


@pytest.fixture(autouse=True)
def _isolated_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep uv away from the developer's cache and any configured index.
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    for name in ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "PIP_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)


def run_python(python: str, code: str) -> str:
    completed = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return completed.stdout.strip()


def ready_venvs(cache_dir: Path) -> list[Path]:
    return sorted(p.parent for p in cache_dir.glob(f"*/{READY_MARKER}"))


def test_builds_a_venv_that_imports_the_required_wheel(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "wheels", "bs_demo", value="built")
    cache_dir, log = tmp_path / "envs", tmp_path / "logs" / "build.log"

    python = prepare_python([str(wheel)], cache_dir, log, offline=True)

    assert python != sys.executable
    assert Path(python).is_relative_to(cache_dir)
    assert run_python(python, "import bs_demo; print(bs_demo.VALUE)") == "built"
    # Isolated from the engine's own packages.
    assert (
        run_python(python, "import importlib.util as u; print(u.find_spec('yaml'))")
        == "None"
    )
    text = log.read_text()
    assert "uv venv" in text and "uv pip install" in text
    assert "bs_demo" in text
    assert ready_venvs(cache_dir) == [Path(python).parent.parent]


def test_console_scripts_work_after_the_venv_is_moved_into_place(
    tmp_path: Path,
) -> None:
    wheel = make_wheel(tmp_path / "wheels", "bs_script", value="from script")
    python = prepare_python(
        [str(wheel)], tmp_path / "envs", tmp_path / "build.log", offline=True
    )

    script = Path(python).parent / "bs_script-hello"
    completed = subprocess.run(
        [str(script)], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "from script"


def test_second_call_reuses_the_cached_venv(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "wheels", "bs_cached")
    cache_dir = tmp_path / "envs"
    first = prepare_python([str(wheel)], cache_dir, tmp_path / "a.log", offline=True)

    started = time.monotonic()
    second = prepare_python(
        [f"  {wheel}  ", "# a comment", ""],
        cache_dir,
        tmp_path / "b.log",
        offline=True,
    )
    elapsed = time.monotonic() - started

    assert second == first
    assert elapsed < 5  # no build: a build takes seconds even offline
    text = (tmp_path / "b.log").read_text()
    env_id = environment_hash([str(wheel)])
    assert f"using cached environment {env_id} at {cache_dir / env_id}" in text
    assert "uv venv" not in text
    assert len(ready_venvs(cache_dir)) == 1


def test_cache_hit_is_appended_to_an_existing_log(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "wheels", "bs_append")
    log = tmp_path / "build.log"
    prepare_python([str(wheel)], tmp_path / "envs", log, offline=True)
    prepare_python([str(wheel)], tmp_path / "envs", log, offline=True)

    text = log.read_text()
    assert "uv pip install" in text
    assert text.index("uv pip install") < text.index("using cached environment")


def test_different_requirements_get_different_venvs(tmp_path: Path) -> None:
    one = make_wheel(tmp_path / "wheels", "bs_one", value="one")
    two = make_wheel(tmp_path / "wheels", "bs_two", value="two")
    cache_dir = tmp_path / "envs"

    python_one = prepare_python([str(one)], cache_dir, tmp_path / "1.log", offline=True)
    python_two = prepare_python([str(two)], cache_dir, tmp_path / "2.log", offline=True)

    assert python_one != python_two
    assert run_python(python_two, "import bs_two; print(bs_two.VALUE)") == "two"
    with pytest.raises(subprocess.CalledProcessError):
        run_python(python_two, "import bs_one")
    assert len(ready_venvs(cache_dir)) == 2


@pytest.mark.parametrize("requirements", [[], ["", "   ", "# only a comment"]])
def test_no_requirements_means_the_base_interpreter(
    tmp_path: Path, requirements: list[str]
) -> None:
    cache_dir, log = tmp_path / "envs", tmp_path / "logs" / "build.log"

    assert prepare_python(requirements, cache_dir, log) == sys.executable
    assert prepare_python(requirements, cache_dir, log, base_python="/x/py") == (
        "/x/py"
    )
    assert not cache_dir.exists()
    assert not log.parent.exists()


def test_unknown_package_fails_offline_with_uvs_error_in_the_log(
    tmp_path: Path,
) -> None:
    cache_dir, log = tmp_path / "envs", tmp_path / "build.log"

    started = time.monotonic()
    with pytest.raises(EnvironmentBuildError) as caught:
        prepare_python(["bs-no-such-package-xyz"], cache_dir, log, offline=True)
    assert time.monotonic() - started < 30

    error = caught.value
    assert error.message.startswith("building the scoring environment failed: ")
    assert "bs-no-such-package-xyz" in error.message
    assert error.log_path == str(log)
    assert str(log) in error.hint
    assert "python_requirements / conda_file" in error.hint
    text = log.read_text()
    assert "error:" in text and "bs-no-such-package-xyz" in text
    assert ready_venvs(cache_dir) == []
    # Neither a half-built nor a temporary folder is left behind.
    assert [p.name for p in cache_dir.iterdir() if p.is_dir()] == []


def test_failed_build_leaves_nothing_and_a_retry_rebuilds(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    missing = wheels / "bs_later-0.1-py3-none-any.whl"
    cache_dir, log = tmp_path / "envs", tmp_path / "build.log"

    with pytest.raises(EnvironmentBuildError) as caught:
        prepare_python([str(missing)], cache_dir, log, offline=True)
    assert "bs_later-0.1-py3-none-any.whl" in caught.value.message
    assert ready_venvs(cache_dir) == []

    assert make_wheel(wheels, "bs_later") == missing
    python = prepare_python([str(missing)], cache_dir, log, offline=True)
    assert run_python(python, "import bs_later; print(bs_later.VALUE)") == "hello"


def test_unparsable_requirement_reports_uvs_reason(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentBuildError) as caught:
        prepare_python(
            ["bs_demo>=("], tmp_path / "envs", tmp_path / "build.log", offline=True
        )
    message = caught.value.message
    assert "expected version" in message
    assert "in the requirement list" in message and ".building-" not in message
    assert "bs_demo>=(" in (tmp_path / "build.log").read_text()


def test_a_half_built_venv_is_never_used(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "wheels", "bs_half")
    cache_dir = tmp_path / "envs"
    env_id = environment_hash([str(wheel)])
    # What a crashed builder without the marker would leave: python but no marker.
    half = cache_dir / env_id
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").symlink_to(sys.executable)
    stale_tmp = cache_dir / f".building-{env_id}-crashed"
    stale_tmp.mkdir()

    python = prepare_python([str(wheel)], cache_dir, tmp_path / "b.log", offline=True)

    assert python == str(half / "bin" / "python")
    assert (half / READY_MARKER).is_file()
    assert run_python(python, "import bs_half; print(bs_half.VALUE)") == "hello"
    assert not stale_tmp.exists()
    assert "removing unfinished environment folder" in (tmp_path / "b.log").read_text()


def test_concurrent_builders_of_the_same_hash_share_one_venv(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "wheels", "bs_race", value="raced")
    cache_dir = tmp_path / "envs"
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def build(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(
                prepare_python(
                    [str(wheel)], cache_dir, tmp_path / f"{index}.log", offline=True
                )
            )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    assert run_python(results[0], "import bs_race; print(bs_race.VALUE)") == "raced"
    assert ready_venvs(cache_dir) == [Path(results[0]).parent.parent]
    assert not list(cache_dir.glob(".building-*"))
    logs = (tmp_path / "0.log").read_text() + (tmp_path / "1.log").read_text()
    assert logs.count("uv venv") == 1


def test_losing_the_rename_race_uses_the_winners_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A builder outside our lock (another host on a shared cache) finishes first:
    # the winner's folder appears just before our rename.
    wheel = make_wheel(tmp_path / "wheels", "bs_rename")
    cache_dir = tmp_path / "envs"
    real_rename = os.rename

    def rename_after_a_winner(src: str | Path, dst: str | Path) -> None:
        shutil.copytree(src, dst, symlinks=True)
        (Path(dst) / "winner").touch()
        real_rename(src, dst)

    monkeypatch.setattr(environments.os, "rename", rename_after_a_winner)
    python = prepare_python([str(wheel)], cache_dir, tmp_path / "b.log", offline=True)

    assert (Path(python).parent.parent / "winner").is_file()
    assert not list(cache_dir.glob(".building-*"))
    assert "built concurrently" in (tmp_path / "b.log").read_text()
    assert run_python(python, "import bs_rename; print(bs_rename.VALUE)") == "hello"


def test_environment_hash_is_stable_and_normalized() -> None:
    base = environment_hash(["pandas==2.2.2", "numpy"])

    assert base == environment_hash(["pandas==2.2.2", "numpy"])
    assert len(base) == 16 and int(base, 16) >= 0
    assert base == environment_hash(["  pandas==2.2.2  # pinned", "", "numpy\n"])
    assert base == environment_hash(["pandas==2.2.2\nnumpy"])
    assert base != environment_hash(["pandas==2.2.3", "numpy"])
    assert base != environment_hash(["pandas==2.2.2"])
    assert base != environment_hash(["pandas==2.2.2", "numpy"], python_version="3.12")


def test_normalize_keeps_url_fragments() -> None:
    line = "pkg @ https://example.invalid/pkg.zip#sha256=abc"
    assert normalize_requirements([line + "  # why"]) == [line]


def test_conda_file_pip_section_is_read(tmp_path: Path) -> None:
    conda_file = tmp_path / "environment.yml"
    conda_file.write_text(
        "name: scoring\n"
        "channels: [conda-forge]\n"
        "dependencies:\n"
        "  - python=3.11\n"
        "  - pip\n"
        "  - numpy\n"
        "  - pip:\n"
        "      - pandas==2.2.2\n"
        "      - ./local_pkg\n"
    )
    assert read_conda_pip_requirements(conda_file) == ["pandas==2.2.2", "./local_pkg"]


@pytest.mark.parametrize(
    "text",
    ["name: x\n", "dependencies:\n  - python=3.11\n", "dependencies:\n  - pip:\n"],
)
def test_conda_file_without_pip_packages_gives_no_requirements(
    tmp_path: Path, text: str
) -> None:
    conda_file = tmp_path / "env.yml"
    conda_file.write_text(text)
    assert read_conda_pip_requirements(conda_file) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dependencies:\n  - pip: [a\n", "not valid YAML at line"),
        ("", "is empty"),
        ("- numpy\n", "must be a mapping"),
        ("dependencies: numpy\n", "dependencies must be a list"),
        ("dependencies:\n  - pip: pandas\n", "pip entry must be a list"),
        ("dependencies:\n  - pip:\n      - 1.5\n", "pip entry must be a list"),
        ("dependencies:\n  - conda: [x]\n", "dependency #1"),
    ],
)
def test_malformed_conda_file_raises_spec_error_naming_it(
    tmp_path: Path, text: str, expected: str
) -> None:
    conda_file = tmp_path / "broken-env.yml"
    conda_file.write_text(text)

    with pytest.raises(SpecError) as caught:
        read_conda_pip_requirements(conda_file)
    assert "broken-env.yml" in caught.value.message
    assert expected in caught.value.message


def test_missing_conda_file_raises_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="missing-env.yml cannot be read"):
        read_conda_pip_requirements(tmp_path / "missing-env.yml")
