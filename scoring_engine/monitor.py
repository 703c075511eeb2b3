"""Resource monitor: samples node and scoring-process usage into a job's perf logs."""

from __future__ import annotations

import csv
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger("scoring_engine.monitor")

NODE_FILE = "node_resource_usage.csv"
DISK_FILE = "node_disk_usage.csv"
PROCESSES_FILE = "processes_resource_usage.csv"

NODE_COLUMNS = (
    "timestamp",
    "cpu_pct",
    "cpu_count",
    "memory_used_mb",
    "memory_total_mb",
    "memory_pct",
    "load_avg_1m",
)
DISK_COLUMNS = (
    "timestamp",
    "path",
    "disk_used_gb",
    "disk_total_gb",
    "disk_pct",
    "read_mb",
    "write_mb",
)
PROCESS_COLUMNS = (
    "timestamp",
    "pid",
    "process",
    "ppid",
    "name",
    "cpu_pct",
    "rss_mb",
    "num_threads",
    "cmdline",
)

CMDLINE_MAX_CHARS = 200
# A sample stuck on a hung filesystem must not hold the job's shutdown hostage.
STOP_JOIN_TIMEOUT_S = 10.0

_MB = 1024**2
_GB = 1024**3
_PROCESS_ATTRS = (
    "ppid",
    "name",
    "username",
    "cpu_percent",
    "memory_info",
    "num_threads",
    "create_time",
    "cmdline",
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _ProcessInfo:
    pid: int
    ppid: int | None
    name: str
    username: str
    # None on the first sighting: psutil's first cpu_percent() reading is a
    # meaningless 0.0, and a blank is more honest than a fake idle process.
    cpu_pct: float | None
    rss_mb: float | None
    num_threads: int | None
    create_time: float | None
    cmdline: str


class ResourceMonitor:
    """Samples one node and the job's scoring processes into `perf_dir`.

    `interval` is seconds between samples; 0 switches monitoring off entirely.
    """

    def __init__(
        self,
        perf_dir: Path,
        interval: float,
        watched_pids: Callable[[], Mapping[int, str] | Iterable[int]],
        disk_path: Path,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if interval < 0:
            raise ValueError(f"monitor interval must be >= 0 seconds, got {interval}")
        self.perf_dir = Path(perf_dir)
        self.interval = interval
        self.watched_pids = watched_pids
        self.disk_path = Path(disk_path)
        self.clock = clock
        # Process objects are kept across samples because cpu_percent() reports
        # usage since the previous call on the same object.
        self._procs: dict[int, psutil.Process] = {}
        # sample() may be called directly while the thread also samples; the
        # process cache and cpu_percent baselines are not safe to share.
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled:
            # Primes the system-wide baseline so the first sample's cpu_pct
            # covers the time since construction instead of reading 0.0.
            psutil.cpu_percent(None)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        """Take a first sample now, then one every `interval` s in a daemon thread."""
        if not self.enabled or self._thread is not None:
            return
        self._stop_event = threading.Event()
        self._safe_sample()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._stop_event,),
            name="scoring-engine-resource-monitor",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and take a final sample; a no-op if not running."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        self._stop_event.set()
        thread.join(STOP_JOIN_TIMEOUT_S)
        if thread.is_alive():
            logger.warning(
                "resource monitor thread still busy after %.0f s; "
                "skipping the final sample",
                STOP_JOIN_TIMEOUT_S,
            )
            return
        self._safe_sample()

    def sample(self) -> None:
        """Take one sample now: append a row to each CSV and write the os snapshot."""
        if not self.enabled:
            return
        with self._lock:
            now = _as_utc(self.clock())
            timestamp = now.isoformat(timespec="milliseconds")
            processes = self._read_processes()
            self.perf_dir.mkdir(parents=True, exist_ok=True)
            _append_row(self.perf_dir / NODE_FILE, NODE_COLUMNS, [_node_row(timestamp)])
            _append_row(
                self.perf_dir / DISK_FILE,
                DISK_COLUMNS,
                [_disk_row(timestamp, self.disk_path)],
            )
            roots = self.watched_pids()
            labels = dict(roots) if isinstance(roots, Mapping) else {}
            watched = _with_descendants(roots, processes, labels)
            _append_row(
                self.perf_dir / PROCESSES_FILE,
                PROCESS_COLUMNS,
                [
                    _process_row(timestamp, processes[pid], labels.get(pid, ""))
                    for pid in sorted(watched)
                ],
            )
            self._write_snapshot(now, processes)

    def snapshot_path(self, when: datetime) -> Path:
        """Where the `ps`-style snapshot for the minute of `when` (UTC) lives."""
        when = _as_utc(when)
        return (
            self.perf_dir
            / "os"
            / when.strftime("%Y%m%d%H")
            / f"processes_{when.strftime('%M')}"
        )

    def _run(self, stop_event: threading.Event) -> None:
        while not stop_event.wait(self.interval):
            self._safe_sample()

    def _safe_sample(self) -> None:
        # Monitoring is diagnostics: no failure in it, expected (OSError,
        # psutil.Error) or not, may stop the thread or fail the job.
        try:
            self.sample()
        except Exception:
            logger.exception("resource sample failed; monitoring continues")

    def _read_processes(self) -> dict[int, _ProcessInfo]:
        """Read every process on the node once, reusing cached Process objects."""
        seen: dict[int, psutil.Process] = {}
        infos: dict[int, _ProcessInfo] = {}
        for pid in psutil.pids():
            proc = self._procs.get(pid)
            first_sighting = False
            try:
                # is_running() also detects a recycled pid (create time differs).
                if proc is None or not proc.is_running():
                    proc = psutil.Process(pid)
                    first_sighting = True
                # as_dict reads all attrs inside proc.oneshot() and turns
                # AccessDenied/ZombieProcess into None per attribute.
                attrs = proc.as_dict(list(_PROCESS_ATTRS), ad_value=None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            seen[pid] = proc
            infos[pid] = _process_info(pid, attrs, first_sighting)
        # Dropping exited pids keeps the cache from growing over a long job.
        self._procs = seen
        return infos

    def _write_snapshot(
        self, now: datetime, processes: dict[int, _ProcessInfo]
    ) -> None:
        path = self.snapshot_path(now)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A later sample in the same minute overwrites the file: it is "the
        # node at minute M", and a file per minute bounds its size. Writing a
        # temp file then renaming means a reader never sees a half snapshot.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(_format_snapshot(processes.values()), encoding="utf-8")
        os.replace(tmp, path)


def _as_utc(when: datetime) -> datetime:
    # A naive datetime from an injected clock is taken to already be UTC, as
    # documented, rather than the host's local time.
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 2)


def _node_row(timestamp: str) -> list[object]:
    memory = psutil.virtual_memory()
    # total - available, not `used`: Linux's `used` excludes reclaimable cache
    # differently from `percent`, and the two columns should agree.
    used = memory.total - memory.available
    try:
        load_1m: float | None = psutil.getloadavg()[0]
    except OSError:
        load_1m = None
    return [
        timestamp,
        _round(psutil.cpu_percent(None)),
        psutil.cpu_count() or "",
        _round(used / _MB),
        _round(memory.total / _MB),
        _round(memory.percent),
        _round(load_1m),
    ]


def _disk_row(timestamp: str, disk_path: Path) -> list[object]:
    usage = psutil.disk_usage(str(disk_path))
    # Node-wide counters since boot: mapping disk_path to its block device is
    # not portable, and a reader can diff consecutive rows for a rate.
    io = psutil.disk_io_counters()
    return [
        timestamp,
        str(disk_path),
        _round(usage.used / _GB),
        _round(usage.total / _GB),
        _round(usage.percent),
        "" if io is None else _round(io.read_bytes / _MB),
        "" if io is None else _round(io.write_bytes / _MB),
    ]


def _process_info(pid: int, attrs: dict[str, Any], first: bool) -> _ProcessInfo:
    memory = attrs["memory_info"]
    cpu = attrs["cpu_percent"]
    return _ProcessInfo(
        pid=pid,
        ppid=attrs["ppid"],
        name=attrs["name"] or "",
        username=attrs["username"] or "?",
        cpu_pct=None if first or cpu is None else float(cpu),
        rss_mb=None if memory is None else memory.rss / _MB,
        num_threads=attrs["num_threads"],
        create_time=attrs["create_time"],
        # Whitespace is collapsed so an argv holding newlines (python -c
        # scripts) stays on one line of the snapshot and one CSV line.
        cmdline=" ".join(" ".join(attrs["cmdline"] or ()).split()),
    )


def _with_descendants(
    roots: Iterable[int], processes: dict[int, _ProcessInfo], labels: dict[int, str]
) -> set[int]:
    """The watched pids still alive plus all their descendants.

    A descendant takes its watched ancestor's label (in `labels`, updated).
    """
    children: dict[int, list[int]] = {}
    for info in processes.values():
        if info.ppid is not None:
            children.setdefault(info.ppid, []).append(info.pid)
    # Uses the snapshot's parent links rather than Process.children() so the
    # tree and the rows come from one consistent read of the process table.
    found: set[int] = set()
    pending = [pid for pid in roots if pid in processes]
    while pending:
        pid = pending.pop()
        if pid in found:
            continue
        found.add(pid)
        for child in children.get(pid, ()):
            labels.setdefault(child, labels.get(pid, ""))
            pending.append(child)
    return found


def _process_row(timestamp: str, info: _ProcessInfo, label: str) -> list[object]:
    return [
        timestamp,
        info.pid,
        label,
        "" if info.ppid is None else info.ppid,
        info.name,
        _round(info.cpu_pct),
        _round(info.rss_mb),
        "" if info.num_threads is None else info.num_threads,
        info.cmdline[:CMDLINE_MAX_CHARS],
    ]


def _append_row(path: Path, columns: Sequence[str], rows: list[list[object]]) -> None:
    # Reopened per sample so the file is flushed and closed between samples
    # (a browser can follow it live) and a restarted monitor simply appends.
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(columns)
        writer.writerows(rows)


def _format_snapshot(processes: Iterable[_ProcessInfo]) -> str:
    lines = [
        f"{'PID':>8} {'PPID':>8} {'USER':<12} {'%CPU':>6} {'RSS_MB':>10} "
        f"{'STARTED':<20} COMMAND"
    ]
    for info in sorted(processes, key=lambda p: p.pid):
        started = (
            "-"
            if info.create_time is None
            else datetime.fromtimestamp(info.create_time, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        )
        cpu = "-" if info.cpu_pct is None else f"{info.cpu_pct:.1f}"
        rss = "-" if info.rss_mb is None else f"{info.rss_mb:.1f}"
        ppid = "-" if info.ppid is None else str(info.ppid)
        # Kernel threads have no argv; bracket the name like ps does.
        command = info.cmdline or f"[{info.name}]"
        lines.append(
            f"{info.pid:>8} {ppid:>8} {info.username[:12]:<12} {cpu:>6} "
            f"{rss:>10} {started:<20} {command}"
        )
    return "\n".join(lines) + "\n"
