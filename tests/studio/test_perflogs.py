"""perflogs: bounded reads of perf CSVs, the mini-batch report and user error logs.

Job folders come from real engine runs (run_job on the fixture scripts); the
24-hour folder is generated in the monitor's own CSV format.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scoring_engine import JobSpec, load_deployment, run_job
from scoring_engine.jobfolder import PROCESSED_COLUMNS
from scoring_engine.monitor import DISK_COLUMNS, NODE_COLUMNS, PROCESS_COLUMNS
from studio import perflogs
from tests.conftest import write_deployment, write_text_files

DAY = 86_400
DAY_PIDS = (4101, 4102)
CMDLINE = "/srv/venv/bin/python /srv/scoring_engine/host.py --script score.py " * 3


def run_engine_job(folder: Path, script: str, **fields: object) -> Path:
    """Run a fixture script on 12 text files with run_job; the job folder."""
    inputs = folder / "inputs"
    write_text_files(inputs, 12)
    deployment = load_deployment(write_deployment(folder, script, **fields))
    spec = JobSpec(
        name=folder.name,
        deployment=deployment,
        input_path=inputs,
        job_dir=folder / "job",
        node="node-a",
        env_cache=folder / "envs",
    )
    run_job(spec)
    return spec.job_dir


@pytest.fixture(scope="module")
def failing_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Monitored every 0.2 s; mini-batch 1 (files 2 and 3) fails both tries."""
    return run_engine_job(
        tmp_path_factory.mktemp("failing"),
        "raises_on_file.py",
        resource_monitor_interval=0.2,
        mini_batch_size=2,
        max_concurrency_per_instance=2,
        retry_settings={"max_retries": 2},
        environment_variables={"BAD_FILE": "file_003.txt"},
    )


@pytest.fixture(scope="module")
def bad_init_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_engine_job(
        tmp_path_factory.mktemp("bad-init"),
        "bad_init.py",
        resource_monitor_interval=0.2,
    )


@pytest.fixture(scope="module")
def unmonitored_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_engine_job(
        tmp_path_factory.mktemp("unmonitored"),
        "ok.py",
        resource_monitor_interval=0,
        mini_batch_size=3,
    )


@pytest.fixture(scope="module")
def day_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job folder of a 24-hour job sampled each second, two scoring processes."""
    job_dir = tmp_path_factory.mktemp("day") / "job"
    write_day_of_samples(job_dir / "logs" / "perf" / "node-a")
    write_attempts(job_dir, 86_400)
    return job_dir


def write_day_of_samples(perf_dir: Path, seconds: int = DAY) -> None:
    """The monitor's three CSVs, one sample a second from 2026-01-01 00:00 UTC."""
    perf_dir.mkdir(parents=True)
    stamps = [
        f"2026-01-01T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000+00:00"
        for s in range(seconds)
    ]
    _write_csv(
        perf_dir / "node_resource_usage.csv",
        NODE_COLUMNS,
        (f"{t},{s % 100},2,{900 + s % 50},24000,4.1,1.5" for s, t in enumerate(stamps)),
    )
    _write_csv(
        perf_dir / "node_disk_usage.csv",
        DISK_COLUMNS,
        (
            f"{t},/data,28.0,252.0,11.1,{4000 + s},{9000 + 2 * s}"
            for s, t in enumerate(stamps)
        ),
    )
    _write_csv(
        perf_dir / "processes_resource_usage.csv",
        PROCESS_COLUMNS,
        (
            f"{t},{pid},process{pid % 1000:03d},4000,python,99.5,{120 + s % 7},1,"
            f"{CMDLINE[:200]}"
            for s, t in enumerate(stamps)
            for pid in DAY_PIDS
        ),
    )


def write_attempts(job_dir: Path, count: int) -> None:
    """processed_mini-batches.csv of `count` succeeded attempts, one per second."""
    path = job_dir / perflogs.PROCESSED_CSV
    path.parent.mkdir(parents=True)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = []
    for index in range(count):
        began = start + timedelta(seconds=index)
        ended = began + timedelta(seconds=0.8)
        lines.append(
            f"{index},1,succeeded,node-a,process00{index % 2},{DAY_PIDS[index % 2]},"
            f"10,10,0,{began.isoformat(timespec='milliseconds')},"
            f"{ended.isoformat(timespec='milliseconds')},0.8000,0.7000,0.0500,0.6000,"
        )
    _write_csv(path, PROCESSED_COLUMNS, lines)


def _write_csv(path: Path, columns: tuple[str, ...], lines: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(columns) + "\n")
        handle.writelines(line + "\n" for line in lines)


def test_it_reads_each_nodes_samples_from_a_real_job(failing_job):
    perf = perflogs.read_perf(failing_job)

    assert [node.node for node in perf] == ["node-a"]
    node = perf[0]
    assert len(node.resources) >= 2 and len(node.disk) >= 2
    assert set(node.resources[0]) == set(NODE_COLUMNS)
    attempts = perflogs.read_mini_batches(failing_job).attempts
    host_pids = {row["pid"] for row in attempts}
    assert host_pids <= {row["pid"] for row in node.processes}


def test_it_says_none_when_monitoring_was_off(unmonitored_job):
    assert not (unmonitored_job / "logs" / "perf").exists()

    assert perflogs.read_perf(unmonitored_job) is None
    assert len(perflogs.read_mini_batches(unmonitored_job).attempts) == 4


def test_it_reads_every_attempt_of_the_mini_batch_report(failing_job):
    log = perflogs.read_mini_batches(failing_job)

    assert log.total == 7 and not log.sampled
    assert log.recent == log.attempts
    statuses = sorted(
        (int(r["mini_batch"]), r["attempt"], r["status"]) for r in log.attempts
    )
    assert statuses[1:3] == [(1, "1", "pending"), (1, "2", "failed")]
    assert sum(r["status"] == "succeeded" for r in log.attempts) == 5


def test_an_empty_job_folder_has_nothing_to_read(tmp_path):
    assert perflogs.read_perf(tmp_path) is None
    log = perflogs.read_mini_batches(tmp_path)
    assert log.attempts == [] and log.total == 0
    assert perflogs.read_errors(tmp_path).empty


def test_it_samples_a_day_of_samples_evenly_and_quickly(day_job):
    path = day_job / "logs" / "perf" / "node-a" / "node_resource_usage.csv"
    assert path.stat().st_size > perflogs.WHOLE_FILE_BYTES

    # This thread's CPU time: neither other processes nor other threads'
    # leftovers from earlier tests stretch it.
    started = time.thread_time()
    rows = perflogs.read_csv_sampled(path)
    elapsed = time.thread_time() - started

    assert perflogs.MAX_POINTS * 0.9 <= len(rows) <= perflogs.MAX_POINTS
    stamps = [row["timestamp"] for row in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[0] == "2026-01-01T00:00:00.000+00:00"
    assert stamps[-1] == "2026-01-01T23:59:59.000+00:00"  # the latest sample
    # Evenly spread: no gap much wider than a 2,000th of the day.
    seconds = [datetime.fromisoformat(s).timestamp() for s in stamps]
    gaps = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    assert max(gaps) < 2 * DAY / perflogs.MAX_POINTS
    assert elapsed < 0.5


def test_it_keeps_every_process_of_a_sample_together(day_job):
    path = day_job / "logs" / "perf" / "node-a" / "processes_resource_usage.csv"

    rows = perflogs.read_csv_sampled(path)

    by_stamp: dict[str, list[str]] = {}
    for row in rows:
        by_stamp.setdefault(row["timestamp"], []).append(row["pid"])
    assert len(by_stamp) <= perflogs.MAX_POINTS
    assert all(pids == ["4101", "4102"] for pids in by_stamp.values())
    assert "2026-01-01T23:59:59.000+00:00" in by_stamp


def test_it_reads_fewer_samples_when_each_holds_many_processes(tmp_path):
    path = tmp_path / "processes_resource_usage.csv"
    pids = range(5000, 5120)
    _write_csv(
        path,
        PROCESS_COLUMNS,
        (
            f"2026-01-01T00:{s // 60:02d}:{s % 60:02d}.000+00:00,{pid},,1,python,"
            f"50.0,100.0,1,{CMDLINE[:200]}"
            for s in range(900)
            for pid in pids
        ),
    )
    assert path.stat().st_size > 3 * perflogs.SAMPLE_BYTES

    started = time.thread_time()
    rows = perflogs.read_csv_sampled(path)
    elapsed = time.thread_time() - started

    by_stamp: dict[str, int] = {}
    for row in rows:
        by_stamp[row["timestamp"]] = by_stamp.get(row["timestamp"], 0) + 1
    assert 50 <= len(by_stamp) < 900
    assert set(by_stamp.values()) == {len(pids)}
    assert "2026-01-01T00:14:59.000+00:00" in by_stamp
    assert elapsed < 0.5


def test_it_thins_a_small_file_read_whole(tmp_path):
    write_day_of_samples(tmp_path / "perf", seconds=5000)
    path = tmp_path / "perf" / "node_resource_usage.csv"
    assert path.stat().st_size <= perflogs.WHOLE_FILE_BYTES

    rows = perflogs.read_csv_sampled(path, max_groups=100)

    assert len(rows) <= 100
    assert rows[0]["timestamp"].startswith("2026-01-01T00:00:00")
    assert rows[-1]["timestamp"].startswith("2026-01-01T01:23:19")


def test_it_ignores_a_line_still_being_written(tmp_path):
    path = tmp_path / "node_resource_usage.csv"
    path.write_text(
        ",".join(NODE_COLUMNS) + "\n"
        "2026-01-01T00:00:00.000+00:00,5.0,2,900,24000,4.1,1.5\n"
        "2026-01-01T00:00:01.000+00:00,6.0,2,9"
    )

    rows = perflogs.read_csv_sampled(path)

    assert [row["cpu_pct"] for row in rows] == ["5.0"]


def test_it_samples_a_big_mini_batch_report_and_keeps_its_end_whole(day_job):
    path = day_job / perflogs.PROCESSED_CSV
    assert path.stat().st_size > perflogs.ATTEMPTS_WHOLE_BYTES

    started = time.thread_time()
    log = perflogs.read_mini_batches(day_job)
    elapsed = time.thread_time() - started

    assert log.sampled
    assert len(log.attempts) <= perflogs.MAX_ATTEMPTS
    indexes = [int(row["mini_batch"]) for row in log.recent]
    assert indexes[-1] == 86_399
    assert indexes == list(range(indexes[0], 86_400))
    assert 86_400 * 0.9 < log.total < 86_400 * 1.1
    assert elapsed < 0.5


def test_it_groups_run_errors_by_exception_type_with_their_mini_batches(failing_job):
    report = perflogs.read_errors(failing_job)

    assert [(g.kind, g.label, g.count) for g in report.groups] == [
        ("run", "ValueError", 2)
    ]
    group = report.groups[0]
    assert group.mini_batches == {1}
    assert group.messages == ["ValueError: cannot score file_003.txt"]
    assert [(o.mini_batch, o.attempt) for o in group.shown] == [(1, 1), (1, 2)]
    first = group.shown[0]
    assert first.files == "file_002.txt (+1 more)"
    assert first.node == "node-a" and first.process.startswith("process00")
    assert first.traceback.startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"cannot score' in first.traceback
    assert first.traceback.endswith("ValueError: cannot score file_003.txt")
    assert len(report.summary) == 2 and not report.summary_cut
    assert "mini-batch 1 attempt 2" in report.summary[1]


def test_it_puts_init_failures_first(bad_init_job, failing_job, tmp_path):
    job_dir = tmp_path / "job"
    shutil.copytree(bad_init_job, job_dir)
    run_log = next((failing_job / perflogs.ERROR_DIR).glob("*/*.txt"))
    shutil.copy(run_log, job_dir / perflogs.ERROR_DIR / "node-a" / "process009.txt")

    report = perflogs.read_errors(job_dir)

    assert [(g.kind, g.label) for g in report.groups] == [
        ("init", "FileNotFoundError"),
        ("run", "ValueError"),
    ]
    init = report.groups[0].shown[0]
    assert init.mini_batch is None and init.process == "process000"
    assert init.message == "FileNotFoundError: model.pkl not found in the model folder"
    assert "script.init()" in init.traceback


def test_it_groups_untyped_errors_by_their_message():
    text = (
        "2026-01-01T00:00:01.000+00:00 mini-batch 4 attempt 1 (a.txt): run() did"
        " not return within 30 s (retry_settings.timeout); the scoring process was"
        " stopped\n"
        "2026-01-01T00:00:01.000+00:00 run() did not return within 30 s"
        " (retry_settings.timeout); the scoring process was stopped\n"
        "2026-01-01T00:00:09.000+00:00 mini-batch 5 attempt 2 (b.txt): the scoring"
        " process was killed by SIGKILL while running this mini-batch\n"
    )

    found = perflogs.parse_error_log(text, "node-a", "process000")

    assert [(o.mini_batch, o.attempt, o.files) for o in found] == [
        (4, 1, "a.txt"),
        (5, 2, "b.txt"),
    ]
    assert found[0].traceback == ""  # the message alone, repeated, is no traceback
    groups = perflogs.group_errors(found)
    assert [g.label for g in groups] == [
        "run() did not return within N s (retry_settings.timeout);"
        " the scoring process was stopped",
        "the scoring process was killed by SIGKILL while running this mini-batch",
    ]


def test_it_reads_only_the_head_and_tail_of_a_huge_error_log(bad_init_job, tmp_path):
    job_dir = tmp_path / "job"
    shutil.copytree(bad_init_job, job_dir)
    log = job_dir / perflogs.ERROR_DIR / "node-a" / "process000.txt"
    block = (
        "2026-01-01T00:00:{s:02d}.000+00:00 mini-batch {n} attempt 1 (f.txt):"
        " KeyError: 'id'\n"
        "2026-01-01T00:00:{s:02d}.000+00:00 Traceback (most recent call last):\n"
        "2026-01-01T00:00:{s:02d}.000+00:00 KeyError: 'id'\n"
    )
    with log.open("a") as handle:
        for number in range(60_000):
            handle.write(block.format(s=number % 60, n=number))
    assert log.stat().st_size > 10 * 1024**2

    report = perflogs.read_errors(job_dir)

    # Bounded by what it reads, not by a clock: the head and the tail only.
    assert report.partly_read == ["logs/user/error/node-a/process000.txt"]
    assert [g.label for g in report.groups] == ["FileNotFoundError", "KeyError"]
    keys = report.groups[1]
    assert 0 < keys.count < 60_000
    assert len(keys.shown) == perflogs.MAX_SHOWN_PER_GROUP
    assert 59_999 in keys.mini_batches  # the tail was read


def test_it_keeps_the_last_lines_of_a_long_error_summary(tmp_path):
    summary = tmp_path / perflogs.ERROR_SUMMARY
    summary.parent.mkdir(parents=True)
    summary.write_text(
        "".join(f"mini-batch {n} attempt 1 on process000: E\n" for n in range(20_000))
    )

    report = perflogs.read_errors(tmp_path)

    assert len(report.summary) == perflogs.SUMMARY_LINES and report.summary_cut
    assert report.summary[-1].startswith("mini-batch 19999 ")
    assert not report.empty and report.groups == []
