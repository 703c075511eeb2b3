"""User code that crashes, hangs or fails init() loses one attempt, not the job."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, write_deployment


@pytest.mark.parametrize(
    ("mode", "cause"),
    [
        ("exit", "exited with code 42"),
        ("os_exit", "exited with code 3"),
        ("segfault", "killed by SIGSEGV"),
        ("sigkill", "killed by SIGKILL"),
        ("memory", "MemoryError"),
        ("after_return", "exited with code 7"),
    ],
)
def test_a_crashing_mini_batch_is_retried_and_output_stays_exactly_once(
    tmp_path, text_inputs, mode, cause
):
    markers = tmp_path / "markers"
    markers.mkdir()
    deployment = write_deployment(
        tmp_path,
        "crashes.py",
        mini_batch_size=3,
        max_concurrency_per_instance=2,
        environment_variables={
            "CRASH_FILE": "file_004.txt",
            "CRASH_MODE": mode,
            "MARKER_DIR": str(markers),
        },
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert "4/4 mini-batches succeeded (0 failed)" in run.stdout
    assert run.output_lines() == [f"file_{n:03d}.txt" for n in range(12)]
    assert cause in run.read("logs/user/error.txt")


def test_a_script_without_run_fails_the_job_early_with_its_cause(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "no_run.py")

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 1
    assert "defines no run() function" in run.stdout
    overview = run.read("logs/job_progress_overview.txt")
    assert "Cause: init() failed: no_run.py: AttributeError" in overview
    assert "Look at: logs/user/error/node-a/process000.txt" in overview
    trace = run.read("logs/user/error/node-a/process000.txt")
    assert "Traceback" in trace and "defines no run() function" in trace


def test_init_that_raises_fails_the_job_with_the_traceback(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path, "bad_init.py", max_concurrency_per_instance=2
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 1
    cause, look_at = run.read("logs/job_error.txt").splitlines()
    assert "FileNotFoundError: model.pkl not found" in cause
    trace = run.read(look_at.removeprefix("Look at: "))
    assert 'raise FileNotFoundError("model.pkl not found' in trace
    assert "Status: failed" in run.read("logs/job_progress_overview.txt")
    assert "init() on process00" in run.read("logs/user/error.txt")
