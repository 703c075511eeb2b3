"""The job folder of DESIGN section 4: its paths and its append-and-flush writers."""

from __future__ import annotations

import csv
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import JobFolderError

PROCESSED_COLUMNS = (
    "mini_batch",
    "attempt",
    "status",
    "node",
    "process",
    "pid",
    "total_items",
    "succeeded_items",
    "failed_items",
    "start_time",
    "end_time",
    "duration_s",
    "run_s",
    "write_s",
    "process_cpu_s",
    "error",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None = None) -> str:
    return (moment or utc_now()).isoformat(timespec="milliseconds")


class LogFile:
    """A text log appended line by line and flushed, so readers can follow it live.

    Safe to share between the threads of one process.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open

    def write(self, message: str) -> None:
        stamp = timestamp()
        text = "".join(f"{stamp} {line}\n" for line in message.splitlines() or [""])
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def write_raw(self, text: str) -> None:
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class CsvLog:
    """A CSV file with its header declared once, one flushed row per append."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.columns = tuple(columns)
        self._lock = threading.Lock()
        new = not path.exists() or path.stat().st_size == 0
        self._file = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.columns)
            self._file.flush()

    def append(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._writer.writerow([row.get(column, "") for column in self.columns])
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` whole, so a reader never sees half a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


class JobFolder:
    """Paths of one job's folder; creating it refuses a folder that holds a job."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    @classmethod
    def create(cls, root: Path) -> JobFolder:
        """Make a new job folder; refuse one that already holds a job's files.

        Raises JobFolderError: the folder exists and is not empty.
        """
        folder = cls(root)
        if folder.root.exists() and any(folder.root.iterdir()):
            raise JobFolderError(
                f"job folder {folder.root} already holds a job's output;"
                " nothing was overwritten",
                hint="a new output location is needed for every invocation",
            )
        for directory in (folder.outputs_dir, folder.sys_dir, folder.driver_log.parent):
            directory.mkdir(parents=True, exist_ok=True)
        folder.parts_dir.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def sys_dir(self) -> Path:
        return self.logs_dir / "sys"

    @property
    def driver_log(self) -> Path:
        return self.root / "azureml-logs" / "70_driver_log.txt"

    @property
    def progress_overview(self) -> Path:
        return self.logs_dir / "job_progress_overview.txt"

    @property
    def job_result(self) -> Path:
        return self.logs_dir / "job_result.txt"

    @property
    def job_error(self) -> Path:
        return self.logs_dir / "job_error.txt"

    @property
    def master_log(self) -> Path:
        return self.sys_dir / "master_role.txt"

    @property
    def processed_csv(self) -> Path:
        return self.sys_dir / "job_report" / "processed_mini-batches.csv"

    @property
    def environment_log(self) -> Path:
        return self.sys_dir / "environment_build.txt"

    @property
    def user_error_summary(self) -> Path:
        return self.logs_dir / "user" / "error.txt"

    @classmethod
    def reopen(cls, root: Path) -> JobFolder:
        """An existing job folder, to resume the job it holds."""
        folder = cls(root)
        if not folder.root.is_dir():
            raise JobFolderError(f"job folder {folder.root} does not exist")
        folder.parts_dir.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def checkpoint(self) -> Path:
        return self.root / ".state" / "checkpoint.json"

    @property
    def parts_dir(self) -> Path:
        """Published per-mini-batch output parts; hidden engine state."""
        return self.root / ".state" / "parts"

    def output_file(self, name: str) -> Path:
        return self.outputs_dir / name

    def node_log(self, node: str, process: str) -> Path:
        return self.sys_dir / "node" / node / f"{process}.txt"

    def user_error_log(self, node: str, process: str) -> Path:
        return self.logs_dir / "user" / "error" / node / f"{process}.txt"

    def user_stdout(self, node: str, process: str) -> Path:
        return self.logs_dir / "user" / "stdout" / node / f"{process}.stdout.txt"

    def user_stderr(self, node: str, process: str) -> Path:
        return self.logs_dir / "user" / "stderr" / node / f"{process}.stderr.txt"

    def perf_dir(self, node: str) -> Path:
        return self.logs_dir / "perf" / node

    def part_file(self, index: int) -> Path:
        return self.parts_dir / f"{index:08d}.csv"

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))
