"""Tests for the resource monitor against real psutil, files and child processes."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from scoring_engine.monitor import (
    DISK_COLUMNS,
    NODE_COLUMNS,
    PROCESS_COLUMNS,
    ResourceMonitor,
)

FIXED_NOW = datetime(2026, 11, 25, 10, 7, 30, 123000, tzinfo=UTC)

# Busy-loops (so it accrues cpu time) after starting a sleeping child, whose pid
# it prints so the test can wait for the whole tree to exist.
BUSY_PARENT = (
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "while True:\n"
    "    pass\n"
)


def fixed_clock() -> datetime:
    return FIXED_NOW


def make_monitor(
    tmp_path: Path,
    pids: Callable[[], Iterable[int]] = lambda: [os.getpid()],
    interval: float = 5.0,
    clock: Callable[[], datetime] = fixed_clock,
) -> ResourceMonitor:
    return ResourceMonitor(
        perf_dir=tmp_path / "logs" / "perf" / "node-1",
        interval=interval,
        watched_pids=pids,
        disk_path=tmp_path,
        clock=clock,
    )


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == columns
        return list(reader)


def header_count(path: Path, columns: tuple[str, ...]) -> int:
    return path.read_text(encoding="utf-8").splitlines().count(",".join(columns))


@pytest.fixture
def busy_tree() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A busy parent process and the pid of its sleeping child."""
    parent = subprocess.Popen(
        [sys.executable, "-c", BUSY_PARENT], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        yield parent, child_pid
    finally:
        try:
            psutil.Process(child_pid).kill()
        except psutil.NoSuchProcess:
            pass
        parent.kill()
        parent.wait()
        parent.stdout.close()


def test_sample_writes_all_csvs_with_headers_and_typed_rows(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)

    monitor.sample()

    node = read_rows(monitor.perf_dir / "node_resource_usage.csv", NODE_COLUMNS)
    assert len(node) == 1
    row = node[0]
    assert row["timestamp"] == "2026-11-25T10:07:30.123+00:00"
    assert 0 <= float(row["cpu_pct"]) <= 100
    assert int(row["cpu_count"]) >= 1
    assert 0 < float(row["memory_used_mb"]) <= float(row["memory_total_mb"])
    assert 0 <= float(row["memory_pct"]) <= 100
    assert float(row["load_avg_1m"]) >= 0

    disk = read_rows(monitor.perf_dir / "node_disk_usage.csv", DISK_COLUMNS)
    assert len(disk) == 1
    row = disk[0]
    assert row["timestamp"] == "2026-11-25T10:07:30.123+00:00"
    assert row["path"] == str(tmp_path)
    assert 0 <= float(row["disk_used_gb"]) <= float(row["disk_total_gb"])
    assert 0 <= float(row["disk_pct"]) <= 100
    # Blank is allowed: some hosts expose no disk io counters.
    assert row["read_mb"] == "" or float(row["read_mb"]) >= 0
    assert row["write_mb"] == "" or float(row["write_mb"]) >= 0

    procs = read_rows(
        monitor.perf_dir / "processes_resource_usage.csv", PROCESS_COLUMNS
    )
    mine = [r for r in procs if int(r["pid"]) == os.getpid()]
    assert len(mine) == 1
    row = mine[0]
    assert int(row["ppid"]) == os.getppid()
    assert row["name"]
    # First sighting of a process: psutil has no cpu baseline yet.
    assert row["cpu_pct"] == ""
    assert float(row["rss_mb"]) > 0
    assert int(row["num_threads"]) >= 1
    assert 0 < len(row["cmdline"]) <= 200


def test_sample_writes_ps_snapshot_at_clock_derived_path(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)

    monitor.sample()

    snapshot = monitor.perf_dir / "os" / "2026112510" / "processes_07"
    assert monitor.snapshot_path(FIXED_NOW) == snapshot
    lines = snapshot.read_text(encoding="utf-8").splitlines()
    assert lines[0].split() == [
        "PID",
        "PPID",
        "USER",
        "%CPU",
        "RSS_MB",
        "STARTED",
        "COMMAND",
    ]
    by_pid = {int(line.split()[0]): line for line in lines[1:]}
    # Every process on the node, not just the watched ones.
    assert 1 in by_pid
    assert os.getppid() in by_pid
    mine = by_pid[os.getpid()].split()
    assert int(mine[1]) == os.getppid()
    # Columns are aligned: COMMAND starts at the same offset on every line.
    command_at = lines[0].index("COMMAND")
    assert all(line[command_at - 1] == " " for line in lines[1:])


def test_same_minute_snapshot_is_overwritten(tmp_path: Path) -> None:
    times = iter([FIXED_NOW, FIXED_NOW.replace(second=59), FIXED_NOW.replace(minute=8)])
    monitor = make_monitor(tmp_path, clock=lambda: next(times))

    monitor.sample()
    monitor.sample()
    monitor.sample()

    hour_dir = monitor.perf_dir / "os" / "2026112510"
    assert sorted(p.name for p in hour_dir.iterdir()) == [
        "processes_07",
        "processes_08",
    ]
    text = (hour_dir / "processes_07").read_text(encoding="utf-8")
    assert text.count("COMMAND") == 1


def test_watched_processes_and_their_children_are_sampled(
    tmp_path: Path, busy_tree: tuple[subprocess.Popen[str], int]
) -> None:
    parent_pid, child_pid = busy_tree[0].pid, busy_tree[1]
    monitor = make_monitor(tmp_path, pids=lambda: [parent_pid])
    csv_path = monitor.perf_dir / "processes_resource_usage.csv"

    monitor.sample()

    rows = read_rows(csv_path, PROCESS_COLUMNS)
    assert {int(r["pid"]) for r in rows} == {parent_pid, child_pid}
    child_row = next(r for r in rows if int(r["pid"]) == child_pid)
    assert int(child_row["ppid"]) == parent_pid
    assert "time.sleep(60)" in child_row["cmdline"]
    parent_row = next(r for r in rows if int(r["pid"]) == parent_pid)
    # The parent's multi-line -c script is flattened onto one line.
    assert "print(child.pid, flush=True) while True:" in parent_row["cmdline"]

    # cpu_pct needs a baseline, then some wall time for the busy loop to show.
    deadline = time.monotonic() + 5
    busy_cpu = 0.0
    while busy_cpu <= 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        monitor.sample()
        last = read_rows(csv_path, PROCESS_COLUMNS)[-2:]
        busy_cpu = next(
            float(r["cpu_pct"]) for r in last if int(r["pid"]) == parent_pid
        )
    assert busy_cpu > 0


def test_named_scoring_processes_lend_their_name_to_their_children(
    tmp_path: Path, busy_tree: tuple[subprocess.Popen[str], int]
) -> None:
    parent_pid, child_pid = busy_tree[0].pid, busy_tree[1]
    monitor = make_monitor(tmp_path, pids=lambda: {parent_pid: "process003"})

    monitor.sample()

    rows = read_rows(monitor.perf_dir / "processes_resource_usage.csv", PROCESS_COLUMNS)
    assert {(int(r["pid"]), r["process"]) for r in rows} == {
        (parent_pid, "process003"),
        (child_pid, "process003"),
    }


@pytest.mark.skipif(not hasattr(os, "waitid"), reason="needs os.waitid")
def test_exited_and_zombie_pids_are_tolerated(tmp_path: Path) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Waits for the exit without reaping, so the pid stays a zombie.
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)
        monitor = make_monitor(
            tmp_path, pids=lambda: [exited.pid, zombie.pid, os.getpid()]
        )

        monitor.sample()
        monitor.sample()
    finally:
        zombie.wait()

    rows = read_rows(monitor.perf_dir / "processes_resource_usage.csv", PROCESS_COLUMNS)
    pids = [int(r["pid"]) for r in rows]
    assert pids.count(os.getpid()) == 2
    assert exited.pid not in pids


def test_watched_process_exiting_between_samples_is_dropped(
    tmp_path: Path, busy_tree: tuple[subprocess.Popen[str], int]
) -> None:
    parent, child_pid = busy_tree
    times = iter([FIXED_NOW, FIXED_NOW.replace(second=40)])
    monitor = make_monitor(
        tmp_path, pids=lambda: [parent.pid], clock=lambda: next(times)
    )
    monitor.sample()

    parent.kill()
    parent.wait()
    monitor.sample()

    rows = read_rows(monitor.perf_dir / "processes_resource_usage.csv", PROCESS_COLUMNS)
    # The orphaned child is reparented, so it is no longer under a watched pid.
    assert {int(r["pid"]) for r in rows} == {parent.pid, child_pid}
    assert {r["timestamp"] for r in rows} == {"2026-11-25T10:07:30.123+00:00"}
    node = read_rows(monitor.perf_dir / "node_resource_usage.csv", NODE_COLUMNS)
    assert len(node) == 2


def test_missing_disk_io_counters_leave_blank_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(psutil, "disk_io_counters", lambda: None)
    monitor = make_monitor(tmp_path)

    monitor.sample()

    (row,) = read_rows(monitor.perf_dir / "node_disk_usage.csv", DISK_COLUMNS)
    assert row["read_mb"] == ""
    assert row["write_mb"] == ""
    assert float(row["disk_total_gb"]) > 0


def test_interval_zero_creates_nothing(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path, interval=0)

    monitor.start()
    monitor.sample()
    monitor.stop()

    assert list(tmp_path.iterdir()) == []


def test_negative_interval_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval"):
        make_monitor(tmp_path, interval=-1)


def test_start_stop_takes_two_samples_and_stops_promptly(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path, interval=3600)
    node_csv = monitor.perf_dir / "node_resource_usage.csv"

    began = time.monotonic()
    monitor.start()
    assert len(read_rows(node_csv, NODE_COLUMNS)) == 1
    monitor.stop()
    elapsed = time.monotonic() - began

    # Far below the hour-long interval: stop() woke the sampler at once.
    assert elapsed < 5
    assert len(read_rows(node_csv, NODE_COLUMNS)) == 2
    assert not any(t.name.endswith("resource-monitor") for t in threading.enumerate())

    monitor.stop()
    assert len(read_rows(node_csv, NODE_COLUMNS)) == 2


def test_stop_without_start_does_nothing(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)

    monitor.stop()

    assert list(tmp_path.iterdir()) == []


def test_thread_samples_every_interval(tmp_path: Path) -> None:
    calls = 0
    third_sample = threading.Event()

    def pids() -> list[int]:
        nonlocal calls
        calls += 1
        if calls >= 3:
            third_sample.set()
        return [os.getpid()]

    monitor = make_monitor(tmp_path, pids=pids, interval=0.01)
    monitor.start()
    try:
        assert third_sample.wait(timeout=5)
    finally:
        monitor.stop()

    rows = read_rows(monitor.perf_dir / "node_resource_usage.csv", NODE_COLUMNS)
    assert len(rows) >= 4


def test_failed_sample_is_logged_and_thread_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    recovered = threading.Event()

    def pids() -> list[int]:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise OSError("proc table unreadable")
        recovered.set()
        return [os.getpid()]

    monitor = make_monitor(tmp_path, pids=pids, interval=0.01)
    with caplog.at_level(logging.ERROR, logger="scoring_engine.monitor"):
        monitor.start()
        try:
            assert recovered.wait(timeout=5)
        finally:
            monitor.stop()

    failures = [r for r in caplog.records if r.name == "scoring_engine.monitor"]
    assert len(failures) == 2
    assert "proc table unreadable" in failures[0].exc_text
    rows = read_rows(monitor.perf_dir / "processes_resource_usage.csv", PROCESS_COLUMNS)
    assert any(int(r["pid"]) == os.getpid() for r in rows)


def test_second_monitor_on_same_folder_appends_without_new_header(
    tmp_path: Path,
) -> None:
    first = make_monitor(tmp_path)
    first.sample()
    second = make_monitor(tmp_path)
    second.sample()

    for name, columns in [
        ("node_resource_usage.csv", NODE_COLUMNS),
        ("node_disk_usage.csv", DISK_COLUMNS),
    ]:
        path = second.perf_dir / name
        assert header_count(path, columns) == 1
        assert len(read_rows(path, columns)) == 2
    path = second.perf_dir / "processes_resource_usage.csv"
    assert header_count(path, PROCESS_COLUMNS) == 1
    rows = read_rows(path, PROCESS_COLUMNS)
    assert [int(r["pid"]) for r in rows] == [os.getpid(), os.getpid()]
