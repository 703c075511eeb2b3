"""Resuming a job from its committed mini-batches: after a failure, and after a kill."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.conftest import REPO, run_cli, write_deployment


def attempts(job_dir: Path) -> Counter:
    path = job_dir / "logs/sys/job_report/processed_mini-batches.csv"
    with open(path, newline="") as handle:
        return Counter(int(row["mini_batch"]) for row in csv.DictReader(handle))


def test_a_failed_job_resumes_and_runs_only_what_it_had_not_committed(
    tmp_path, text_inputs
):
    marker = tmp_path / "broken"
    marker.touch()
    deployment = write_deployment(
        tmp_path,
        "slow_until_fixed.py",
        mini_batch_size=2,
        mini_batch_error_threshold=0,
        retry_settings={"max_retries": 1},
        environment_variables={
            "BAD_FILE": "file_006.txt",
            "BROKEN_MARKER": str(marker),
        },
    )
    job_dir = tmp_path / "job"

    first = run_cli(deployment, text_inputs, job_dir)
    assert first.returncode == 1, first.stderr
    before = attempts(job_dir)
    marker.unlink()

    resumed = run_cli(
        deployment, text_inputs, job_dir, "--resume",
        "--set", "mini_batch_error_threshold=-1",
    )  # fmt: skip

    assert resumed.returncode == 0, resumed.stderr
    assert "5/6 mini-batches succeeded (1 failed)" in resumed.stdout
    assert "items 10 succeeded, 2 failed" in resumed.stdout
    names = [f"file_{n:03d}.txt" for n in range(12) if n not in (6, 7)]
    assert resumed.output_lines() == names
    after = attempts(job_dir)
    committed = [i for i in range(3) if before[i]]
    assert all(after[i] == before[i] for i in committed), "committed work re-ran"
    driver = resumed.read("azureml-logs/70_driver_log.txt")
    assert re.search(r"Resuming: mini-batches 0-[3-5] of 6 were committed", driver)


def test_a_killed_job_resumes_with_every_row_exactly_once(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path,
        "slow_until_fixed.py",
        mini_batch_size=1,
        max_concurrency_per_instance=2,
        environment_variables={"SLEEP_S": "0.15"},
    )
    job_dir = tmp_path / "job"
    command = [
        sys.executable, "-m", "scoring_engine", "run",
        "--deployment", str(deployment), "--input", str(text_inputs),
        "--job-dir", str(job_dir), "--node-name", "node-a",
    ]  # fmt: skip
    engine = subprocess.Popen(command, cwd=REPO, env=os.environ.copy())
    output = job_dir / "outputs/predictions.csv"
    deadline = time.monotonic() + 60
    while not (output.exists() and len(output.read_text().splitlines()) >= 4):
        assert time.monotonic() < deadline, "the job never committed 4 rows"
        assert engine.poll() is None, "the job ended before it could be killed"
        time.sleep(0.05)

    engine.send_signal(signal.SIGKILL)
    engine.wait()
    resumed = run_cli(deployment, text_inputs, job_dir, "--resume")

    assert resumed.returncode == 0, resumed.stderr
    assert "12/12 mini-batches succeeded" in resumed.stdout
    assert resumed.output_lines() == [f"file_{n:03d}.txt" for n in range(12)]


def test_a_completed_job_has_nothing_to_resume(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py")
    job_dir = tmp_path / "job"
    assert run_cli(deployment, text_inputs, job_dir).returncode == 0

    again = run_cli(deployment, text_inputs, job_dir, "--resume")

    assert again.returncode == 2
    assert "has nothing to resume: the job completed" in again.stderr


def test_resume_refuses_a_different_partition(tmp_path, text_inputs):
    marker = tmp_path / "broken"
    marker.touch()
    deployment = write_deployment(
        tmp_path,
        "slow_until_fixed.py",
        error_threshold=0,
        retry_settings={"max_retries": 1},
        environment_variables={
            "BAD_FILE": "file_000.txt",
            "BROKEN_MARKER": str(marker),
        },
    )
    job_dir = tmp_path / "job"
    assert run_cli(deployment, text_inputs, job_dir).returncode == 1

    again = run_cli(
        deployment, text_inputs, job_dir, "--resume", "--set", "mini_batch_size=3"
    )

    assert again.returncode == 2
    assert "resume needs the same input and mini_batch_size" in again.stderr
