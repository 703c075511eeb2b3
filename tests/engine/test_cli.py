"""The engine's command line on real files, with real scoring processes."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import run_cli, write_deployment, write_text_files


def processed_rows(job_dir: Path) -> list[dict[str, str]]:
    path = job_dir / "logs/sys/job_report/processed_mini-batches.csv"
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_it_scores_every_file_once_in_input_order(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path, "ok.py", mini_batch_size=5, max_concurrency_per_instance=2
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("completed: 3/3 mini-batches succeeded")
    names = [line.split(",")[0] for line in run.output_lines()]
    assert names == [f"file_{n:03d}.txt" for n in range(12)]
    pids = {line.split(",")[1] for line in run.output_lines()}
    assert len(pids) == 2, "both scoring processes should have taken work"


def test_it_calls_init_once_per_scoring_process(tmp_path, text_inputs):
    markers = tmp_path / "markers"
    markers.mkdir()
    deployment = write_deployment(
        tmp_path,
        "ok.py",
        mini_batch_size=1,
        max_concurrency_per_instance=2,
        environment_variables={"INIT_MARKER_DIR": str(markers)},
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert len(processed_rows(run.job_dir)) == 12
    assert len(list(markers.iterdir())) == 2


def test_it_passes_logging_level_and_captures_script_output(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py", logging_level="debug")

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    stdout = run.read("logs/user/stdout/node-a/process000.stdout.txt")
    assert "logging_level=debug" in stdout
    assert "DEBUG ok_script: debug line from init" in stdout
    assert "INFO ok_script: scoring 10 files" in stdout
    assert "shutdown called" in stdout
    assert "scoring" not in run.read("azureml-logs/70_driver_log.txt")


def test_it_applies_set_overrides(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py", mini_batch_size=10)

    run = run_cli(
        deployment, text_inputs, tmp_path / "job", "--set", "mini_batch_size=4"
    )

    assert run.returncode == 0, run.stderr
    assert "3/3 mini-batches" in run.stdout
    assert "setting mini_batch_size = 4" in run.read("azureml-logs/70_driver_log.txt")


def test_it_filters_input_files_with_glob(tmp_path):
    inputs = tmp_path / "inputs"
    write_text_files(inputs, 3, prefix="keep")
    write_text_files(inputs / "sub", 2, prefix="keep")
    (inputs / "notes.md").write_text("skip me")
    deployment = write_deployment(tmp_path, "ok.py")

    run = run_cli(deployment, inputs, tmp_path / "job", "--glob", "*.txt")

    assert run.returncode == 0, run.stderr
    assert [line.split(",")[0] for line in run.output_lines()] == [
        "keep_000.txt", "keep_001.txt", "keep_002.txt", "keep_000.txt", "keep_001.txt",
    ]  # fmt: skip


def test_it_retries_a_failing_mini_batch_then_completes_with_threshold_off(
    tmp_path, text_inputs
):
    deployment = write_deployment(
        tmp_path,
        "raises_on_file.py",
        mini_batch_size=4,
        retry_settings={"max_retries": 2, "timeout": 30},
        environment_variables={"BAD_FILE": "file_005.txt"},
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert "2/3 mini-batches succeeded (1 failed)" in run.stdout
    assert "items 8 succeeded, 4 failed" in run.stdout
    assert run.output_lines() == [
        f"file_{n:03d}.txt" for n in (0, 1, 2, 3, *range(8, 12))
    ]
    attempts = [r for r in processed_rows(run.job_dir) if r["mini_batch"] == "1"]
    assert [(r["attempt"], r["status"]) for r in attempts] == [
        ("1", "pending"),
        ("2", "failed"),
    ]
    assert "ValueError: cannot score file_005.txt" in run.read("logs/user/error.txt")
    trace = run.read("logs/user/error/node-a/process000.txt")
    assert 'raise ValueError(f"cannot score' in trace


def test_it_fails_the_job_when_failed_items_pass_error_threshold(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path,
        "raises_on_file.py",
        mini_batch_size=4,
        error_threshold=0,
        retry_settings={"max_retries": 1},
        environment_variables={"BAD_FILE": "file_005.txt"},
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 1
    assert run.stdout.startswith("failed:")
    overview = run.read("logs/job_progress_overview.txt")
    assert "Status: failed" in overview
    assert "more than error_threshold 0" in overview
    assert "ValueError: cannot score file_005.txt" in overview
    assert "Look at: logs/user/error/node-a/process000.txt" in overview
    assert "error_threshold" in run.read("logs/job_error.txt")


def test_it_fails_on_mini_batch_error_threshold(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path,
        "raises_on_file.py",
        mini_batch_size=4,
        mini_batch_error_threshold=0,
        retry_settings={"max_retries": 1},
        environment_variables={"BAD_FILE": "file_005.txt"},
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 1
    assert "more than mini_batch_error_threshold 0" in run.stdout


def test_it_counts_items_run_did_not_return_as_failed(tmp_path):
    inputs = tmp_path / "inputs"
    write_text_files(inputs, 3, prefix="keep")
    write_text_files(inputs, 2, prefix="skip")
    deployment = write_deployment(tmp_path, "partial.py")

    run = run_cli(deployment, inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert "items 3 succeeded, 2 failed" in run.stdout


def test_it_stops_a_hanging_run_after_timeout_and_goes_on(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path,
        "hangs.py",
        mini_batch_size=4,
        retry_settings={"max_retries": 2, "timeout": 0.5},
        environment_variables={"HANG_FILE": "file_000.txt"},
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert "2/3 mini-batches succeeded (1 failed)" in run.stdout
    assert "did not return within 0.5 s" in run.read("logs/user/error.txt")
    assert run.output_lines() == [f"file_{n:03d}.txt" for n in range(4, 12)]


def test_it_refuses_a_job_folder_that_holds_a_job(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py")
    job_dir = tmp_path / "job"
    (job_dir / "outputs").mkdir(parents=True)
    (job_dir / "outputs" / "predictions.csv").write_text("precious\n")

    run = run_cli(deployment, text_inputs, job_dir)

    assert run.returncode == 2
    assert "already holds a job's output; nothing was overwritten" in run.stderr
    assert "a new output location is needed" in run.stderr
    assert (job_dir / "outputs" / "predictions.csv").read_text() == "precious\n"
    assert not (job_dir / "logs").exists()


def test_it_refuses_bad_settings_before_starting(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py", output_action="append_rows")

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 2
    assert "output_action: must be one of append_row, summary_only" in run.stderr
    assert not (tmp_path / "job").exists()


def test_it_refuses_an_unknown_override(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py")

    run = run_cli(deployment, text_inputs, tmp_path / "job", "--set", "mini_batch=3")

    assert run.returncode == 2
    assert "mini_batch: cannot be overridden" in run.stderr
    assert "did you mean mini_batch_size?" in run.stderr


def test_it_refuses_a_custom_model_without_code(tmp_path, text_inputs):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\0")
    deployment = write_deployment(tmp_path, None, model={"path": str(model)})

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 2
    assert "no-code deployment is for MLflow models only" in run.stderr
    assert "environment: {python_requirements: []}" in run.stderr


def test_it_refuses_a_missing_input(tmp_path):
    deployment = write_deployment(tmp_path, "ok.py")

    run = run_cli(deployment, tmp_path / "nowhere", tmp_path / "job")

    assert run.returncode == 2
    assert "does not exist" in run.stderr


def test_summary_only_keeps_counts_and_writes_no_output_file(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py", output_action="summary_only")

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert "items 12 succeeded, 0 failed" in run.stdout
    assert list((run.job_dir / "outputs").iterdir()) == []


def test_it_fails_a_mini_batch_whose_run_returns_a_wrong_type(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path, "wrong_type.py", retry_settings={"max_retries": 1}
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert "0/2 mini-batches succeeded (2 failed)" in run.stdout
    assert "run() returned int; it must return a pandas DataFrame or a list" in (
        run.read("logs/user/error.txt")
    )
