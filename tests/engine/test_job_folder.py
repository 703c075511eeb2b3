"""Every file of the job folder contract (DESIGN section 4) is written and parseable."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from tests.conftest import run_cli, write_deployment

NODE_LINE = re.compile(
    r"mini-batch (\d+) attempt (\d+) (\w+): node=node-a pid=(\d+) total_items=(\d+)"
    r" succeeded_items=(\d+) failed_items=(\d+) start_time=(\S+) duration_s=([\d.]+)"
    r" process_cpu_s=([\d.]+) run_s=([\d.]+) write_s=([\d.]+)"
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_finished_job_folder_holds_every_contract_file(tmp_path, text_inputs):
    deployment = write_deployment(
        tmp_path,
        "raises_on_file.py",
        mini_batch_size=4,
        max_concurrency_per_instance=2,
        resource_monitor_interval=0.2,
        retry_settings={"max_retries": 1},
        environment_variables={"BAD_FILE": "file_000.txt"},
    )

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    job = run.job_dir
    assert (job / "outputs/predictions.csv").read_text().splitlines() == [
        f"file_{n:03d}.txt" for n in range(4, 12)
    ]
    driver = (job / "azureml-logs/70_driver_log.txt").read_text()
    assert "3 mini-batches, 12 items" in driver and "Job completed." in driver
    overview = (job / "logs/job_progress_overview.txt").read_text()
    assert "Mini-batches created: 3" in overview
    assert "Mini-batches processed: 3 (succeeded 2, failed 1)" in overview
    assert (job / "logs/job_result.txt").read_text().startswith("completed: 2/3")
    master = (job / "logs/sys/master_role.txt").read_text()
    assert "Created 3 mini-batches" in master and "Job completed" in master

    processed = read_csv(job / "logs/sys/job_report/processed_mini-batches.csv")
    assert sorted((r["mini_batch"], r["status"]) for r in processed) == [
        ("0", "failed"), ("1", "succeeded"), ("2", "succeeded"),
    ]  # fmt: skip
    assert all(float(r["duration_s"]) >= float(r["run_s"]) >= 0 for r in processed)

    node_lines = [
        NODE_LINE.search(line)
        for path in (job / "logs/sys/node/node-a").glob("process*.txt")
        for line in path.read_text().splitlines()
    ]
    assert len(node_lines) == 3 and all(node_lines)

    assert (
        "ValueError: cannot score file_000.txt"
        in (job / "logs/user/error.txt").read_text()
    )
    assert list((job / "logs/user/error/node-a").glob("process*.txt"))
    assert list((job / "logs/user/stdout/node-a").glob("process*.stdout.txt"))
    assert list((job / "logs/user/stderr/node-a").glob("process*.stderr.txt"))

    perf = job / "logs/perf/node-a"
    node_usage = read_csv(perf / "node_resource_usage.csv")
    assert len(node_usage) >= 2 and 0 <= float(node_usage[-1]["cpu_pct"]) <= 100
    assert read_csv(perf / "node_disk_usage.csv")[0]["disk_total_gb"]
    processes = read_csv(perf / "processes_resource_usage.csv")
    assert {r["pid"] for r in processes} >= {r["pid"] for r in processed}
    snapshots = list((perf / "os").glob("*/processes_*"))
    assert snapshots and re.fullmatch(r"\d{10}", snapshots[0].parent.name)
    assert not (job / ".state").exists()


def test_monitoring_off_writes_no_perf_files(tmp_path, text_inputs):
    deployment = write_deployment(tmp_path, "ok.py", resource_monitor_interval=0)

    run = run_cli(deployment, text_inputs, tmp_path / "job")

    assert run.returncode == 0, run.stderr
    assert not (run.job_dir / "logs/perf").exists()
