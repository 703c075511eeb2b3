"""Bounded reads of a job folder's perf CSVs, mini-batch report and user error logs.

Every read here has a byte budget: a 24-hour job sampled each second writes
86,400 rows per CSV, and the error log of a job failing every mini-batch
grows without bound. Big CSVs are sampled at evenly spaced byte offsets, so
the charts cover the whole job; error logs are read at their head and tail.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

# Paths of DESIGN section 4, relative to the job folder.
PERF_DIR = Path("logs", "perf")
NODE_FILE = "node_resource_usage.csv"
DISK_FILE = "node_disk_usage.csv"
PROCESSES_FILE = "processes_resource_usage.csv"
PROCESSED_CSV = Path("logs", "sys", "job_report", "processed_mini-batches.csv")
ERROR_SUMMARY = Path("logs", "user", "error.txt")
ERROR_DIR = Path("logs", "user", "error")

MAX_POINTS = 2000  # samples kept per perf CSV, hence points per chart trace
WHOLE_FILE_BYTES = 1024**2  # CSVs up to this size are read whole
MAX_CHUNK_BYTES = 256 * 1024  # longest read at one sampled offset
SAMPLE_BYTES = 8 * 1024**2  # read from one big CSV, all its offsets together
MAX_NODES = 64
ATTEMPTS_WHOLE_BYTES = 4 * 1024**2  # processed_mini-batches.csv read whole
MAX_ATTEMPTS = 5000  # rows of it sampled when it is bigger
RECENT_BYTES = 512 * 1024  # tail of that CSV read for the mini-batch timeline
SUMMARY_LINES = 50
SUMMARY_BYTES = 64 * 1024
ERROR_BYTES = 2 * 1024**2  # read from all user error logs together
ERROR_FILE_BYTES = 32 * 1024  # at least this much of each (head + tail)
MAX_ERROR_FILES = 256
MAX_SHOWN_PER_GROUP = 20

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?) ")
_ATTEMPT = re.compile(r"^mini-batch (\d+) attempt (\d+) \((.*)\): (.*)$")
_INIT = "init() failed:"
_EXC_TYPE = re.compile(r"^([A-Za-z_][\w.]*): ")

Row = dict[str, str]


@dataclass
class NodePerf:
    """One node's resource samples (rows as written by the engine's monitor)."""

    node: str
    resources: list[Row]
    disk: list[Row]
    processes: list[Row]


@dataclass
class MiniBatchLog:
    """Attempts from processed_mini-batches.csv.

    `attempts` spans the whole job (every row, or an even sample of a big
    file); `recent` holds the last rows whole, for the timeline. `total` is
    the number of rows in the file, estimated when sampled.
    """

    attempts: list[Row]
    recent: list[Row]
    total: int
    sampled: bool = False


@dataclass
class ErrorOccurrence:
    """One failed attempt, or one failed init(), from a user error log."""

    node: str
    process: str
    time: str
    message: str
    traceback: str
    mini_batch: int | None = None
    attempt: int | None = None
    files: str = ""

    @property
    def when(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.time)
        except ValueError:
            return None


@dataclass
class ErrorGroup:
    """Failures with the same exception type (or, untyped, the same message)."""

    kind: str  # "init" or "run"
    label: str
    count: int = 0
    shown: list[ErrorOccurrence] = field(default_factory=list)
    mini_batches: set[int] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        return self.count - len(self.shown)

    @property
    def sorted_mini_batches(self) -> list[int]:
        return sorted(self.mini_batches)


@dataclass
class ErrorReport:
    """The Errors tab: error.txt's last lines and the grouped tracebacks."""

    summary: list[str]
    summary_cut: bool
    groups: list[ErrorGroup]
    partly_read: list[str]  # error logs too big to read whole

    @property
    def empty(self) -> bool:
        return not self.summary and not self.groups


def read_perf(job_dir: Path) -> list[NodePerf] | None:
    """Each node's perf samples; None when the job has no logs/perf folder."""
    root = Path(job_dir) / PERF_DIR
    if not root.is_dir():
        return None
    nodes = sorted(p for p in root.iterdir() if p.is_dir())[:MAX_NODES]
    return [
        NodePerf(
            node=folder.name,
            resources=read_csv_sampled(folder / NODE_FILE),
            disk=read_csv_sampled(folder / DISK_FILE),
            processes=read_csv_sampled(folder / PROCESSES_FILE),
        )
        for folder in nodes
    ]


def read_mini_batches(job_dir: Path) -> MiniBatchLog:
    """The attempts of processed_mini-batches.csv, within a byte budget."""
    path = Path(job_dir) / PROCESSED_CSV
    size = _size(path)
    if size <= ATTEMPTS_WHOLE_BYTES:
        _, lines = _read_range(path, 0, size)
        rows = _valid_attempts(_parse(_header(path), lines[1:]))
        return MiniBatchLog(attempts=rows, recent=rows, total=len(rows))
    attempts = _valid_attempts(read_csv_sampled(path, MAX_ATTEMPTS, group=False))
    _, lines = _read_range(path, size - RECENT_BYTES, size)
    recent = _valid_attempts(_parse(_header(path), lines[1:]))
    total = max(size * len(recent) // RECENT_BYTES, len(attempts))
    return MiniBatchLog(attempts=attempts, recent=recent, total=total, sampled=True)


def read_csv_sampled(
    path: Path,
    max_groups: int = MAX_POINTS,
    whole_bytes: int = WHOLE_FILE_BYTES,
    group: bool = True,
) -> list[Row]:
    """At most `max_groups` samples of a CSV, evenly spread over the file.

    With `group`, consecutive rows sharing their first column (one sample of
    every process, say) are one sample and kept or dropped together. A file
    up to `whole_bytes` is read whole; a bigger one is read in small chunks
    at evenly spaced offsets. A last line still being written is ignored.
    """
    header = _header(path)
    if not header:
        return []
    size = _size(path)
    key = header[0] if group else None
    if size <= whole_bytes:
        _, lines = _read_range(path, 0, size)
        groups = list(_groups(_parse(header, lines[1:]), key))
        if len(groups) <= max_groups:
            return [row for rows in groups for row in rows]
        step = -(-len(groups) // max_groups)
        kept = groups[::step]
        if kept[-1] is not groups[-1]:
            kept[-1] = groups[-1]  # the latest sample always shows
        return [row for rows in kept for row in rows]
    return _sample_offsets(path, header, size, max_groups, key)


def read_errors(job_dir: Path) -> ErrorReport:
    """error.txt's last lines and every user error log's failures, grouped."""
    root = Path(job_dir)
    summary_path = root / ERROR_SUMMARY
    size = _size(summary_path)
    cut, lines = _read_range(summary_path, max(0, size - SUMMARY_BYTES), size)
    if cut:
        lines = lines[1:]
    summary = [line for line in lines if line.strip()]
    found: list[ErrorOccurrence] = []
    partly_read = []
    logs = sorted((root / ERROR_DIR).glob("*/*.txt"))[:MAX_ERROR_FILES]
    budget = max(ERROR_FILE_BYTES, ERROR_BYTES // max(len(logs), 1))
    for log in logs:
        texts = _head_and_tail(log, budget)
        if len(texts) > 1:
            partly_read.append(log.relative_to(root).as_posix())
        for text in texts:
            found += parse_error_log(text, log.parent.name, log.stem)
    return ErrorReport(
        summary=summary[-SUMMARY_LINES:],
        summary_cut=cut or len(summary) > SUMMARY_LINES,
        groups=group_errors(found),
        partly_read=partly_read,
    )


def group_errors(found: list[ErrorOccurrence]) -> list[ErrorGroup]:
    """Failures grouped by exception type: init() groups first, then the biggest."""
    groups: dict[tuple[str, str], ErrorGroup] = {}
    for occurrence in sorted(found, key=lambda o: (o.time, o.node, o.process)):
        kind = "init" if occurrence.mini_batch is None else "run"
        typed = _EXC_TYPE.match(occurrence.message)
        # Untyped messages (timeouts, exits) differ only in numbers: one group.
        label = typed[1] if typed else re.sub(r"\d+", "N", occurrence.message)
        group = groups.setdefault((kind, label), ErrorGroup(kind=kind, label=label))
        group.count += 1
        if occurrence.mini_batch is not None:
            group.mini_batches.add(occurrence.mini_batch)
        if len(group.shown) < MAX_SHOWN_PER_GROUP:
            group.shown.append(occurrence)
        if occurrence.message not in group.messages and len(group.messages) < 5:
            group.messages.append(occurrence.message)
    return sorted(groups.values(), key=lambda g: (g.kind != "init", -g.count, g.label))


def parse_error_log(text: str, node: str, process: str) -> list[ErrorOccurrence]:
    """The failures in one user error log's text.

    Each failure is one timestamped write: a header line (`mini-batch N
    attempt A (files): Type: message` or `init() failed:`) and its traceback,
    every line carrying the write's timestamp.
    """
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _STAMP.match(line)
        stamp, payload = (match[1], line[match.end() :]) if match else ("", line)
        starts = payload.startswith(_INIT) or _ATTEMPT.match(payload)
        if match and (starts or not blocks or stamp != blocks[-1][0]):
            blocks.append((stamp, [payload]))
        elif blocks:
            blocks[-1][1].append(payload)
    return [
        occurrence
        for stamp, lines in blocks
        if (occurrence := _occurrence(stamp, lines, node, process))
    ]


def _occurrence(
    stamp: str, lines: list[str], node: str, process: str
) -> ErrorOccurrence | None:
    body = "\n".join(lines[1:]).strip("\n")
    if lines[0].startswith(_INIT):
        last = next((ln for ln in reversed(lines) if ln.strip()), "")
        return ErrorOccurrence(node, process, stamp, last.strip(), body)
    match = _ATTEMPT.match(lines[0])
    if match is None:
        return None  # the cut end of a block whose header was not read
    message = match[4]
    return ErrorOccurrence(
        node=node,
        process=process,
        time=stamp,
        message=message,
        traceback="" if body.strip() == message else body,
        mini_batch=int(match[1]),
        attempt=int(match[2]),
        files=match[3],
    )


def _head_and_tail(path: Path, budget: int) -> list[str]:
    """[the whole text] of a small file, else [its head, its tail]."""
    size = _size(path)
    if size <= budget:
        return ["\n".join(_read_range(path, 0, size)[1])]
    _, head = _read_range(path, 0, budget // 4)
    _, tail = _read_range(path, size - budget * 3 // 4, size)
    # The tail's first block lacks its header line; parse_error_log skips it.
    return ["\n".join(head), "\n".join(tail[1:])]


def _sample_offsets(
    path: Path, header: list[str], size: int, max_groups: int, key: str | None
) -> list[Row]:
    start = len(_first_line(path))
    chunk = _chunk_size(path, header, start, key)
    budget = SAMPLE_BYTES
    with path.open("rb") as handle:
        # The latest sample first, so it shows whatever the budget allows.
        end = max(start, size - chunk)
        latest, chunk = _sample_at(handle, header, end, chunk, key, start, True)
        # Bigger samples (many processes) mean fewer of them.
        spread = max(1, min(max_groups - 1, SAMPLE_BYTES // chunk))
        seen: set[tuple[str, ...]] = set()
        rows: list[Row] = []
        for number in range(spread):
            if budget < chunk:
                break  # samples grew past the first ones; stay within budget
            budget -= chunk
            offset = start + (size - start) * number // spread
            sample, chunk = _sample_at(handle, header, offset, chunk, key, start)
            if sample and tuple(sample[0].values()) not in seen:
                seen.add(tuple(sample[0].values()))
                rows.extend(sample)
    if latest and tuple(latest[0].values()) not in seen:
        rows.extend(latest)
    return rows


def _sample_at(
    handle: BinaryIO,
    header: list[str],
    offset: int,
    chunk: int,
    key: str | None,
    start: int,
    last: bool = False,
) -> tuple[list[Row], int]:
    """The first (or `last`) whole sample after `offset`, and the chunk size used.

    The sample is [] when none fits in MAX_CHUNK_BYTES.
    """
    at_start = offset == start
    while True:
        handle.seek(offset)
        data = handle.read(chunk)
        eof = len(data) < chunk or not handle.read(1)
        pieces = data.decode("utf-8", "replace").split("\n")
        # The last piece is cut by the chunk's end, the first by the offset.
        lines = pieces[:-1] if at_start else pieces[1:-1]
        groups = list(_groups(_parse(header, lines), key))
        if key and not at_start:
            groups = groups[1:]  # may lack the rows before the offset
        # A group is whole once the next one starts, or the file ends.
        whole = groups if eof or key is None else groups[:-1]
        if whole:
            return (whole[-1] if last else whole[0]), chunk
        if eof or chunk >= MAX_CHUNK_BYTES:
            return [], chunk
        chunk = min(chunk * 2, MAX_CHUNK_BYTES)


def _chunk_size(path: Path, header: list[str], start: int, key: str | None) -> int:
    """Enough bytes for about three samples, judged from the file's start."""
    _, lines = _read_range(path, start, start + 64 * 1024)
    groups = list(_groups(_parse(header, lines), key))[:-1]
    if not groups:
        return 4096
    rows = sum(len(g) for g in groups)
    used = sum(len(line) + 1 for line in lines[:rows])
    return min(max(512, 4 * used // len(groups)), MAX_CHUNK_BYTES)


def _groups(rows: list[Row], key: str | None) -> Iterator[list[Row]]:
    if key is None:
        yield from ([row] for row in rows)
        return
    current: list[Row] = []
    for row in rows:
        if current and row[key] != current[0][key]:
            yield current
            current = []
        current.append(row)
    if current:
        yield current


def _parse(header: list[str], lines: list[str]) -> list[Row]:
    rows = []
    for values in csv.reader(lines):
        if len(values) == len(header):
            rows.append(dict(zip(header, values, strict=True)))
    return rows


def _valid_attempts(rows: list[Row]) -> list[Row]:
    # A sampled offset can land inside a quoted multi-line error message.
    return [
        r
        for r in rows
        if r.get("mini_batch", "").isdigit() and r.get("attempt", "").isdigit()
    ]


def _header(path: Path) -> list[str]:
    return next(csv.reader([_first_line(path).decode("utf-8", "replace")]), [])


def _first_line(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            line = handle.readline(64 * 1024)
    except OSError:
        return b""
    return line if line.endswith(b"\n") else b""


def _read_range(path: Path, start: int, end: int) -> tuple[bool, list[str]]:
    """Complete lines of bytes [start, end); True first when start cut a line."""
    if end <= start:
        return False, []
    with path.open("rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")[:-1]  # a last line without newline is unfinished
    return start > 0, lines


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
