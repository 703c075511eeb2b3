"""Pure partitioning: a job's input files -> ordered mini-batch descriptors."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .config import MiniBatchSize
from .errors import InputError, SpecError

TABULAR_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Segment:
    """A slice of one tabular file: CSV byte range or Parquet row range."""

    path: str
    first_row: int
    rows: int
    start: int = 0
    end: int = 0

    def as_message(self) -> dict[str, object]:
        return {
            "path": self.path,
            "first_row": self.first_row,
            "rows": self.rows,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class MiniBatch:
    """One unit of work: a list of files, or segments of tabular files."""

    index: int
    files: tuple[str, ...] = ()
    segments: tuple[Segment, ...] = field(default=())

    @property
    def item_count(self) -> int:
        return len(self.files) if self.files else sum(s.rows for s in self.segments)

    @property
    def is_tabular(self) -> bool:
        return bool(self.segments)

    def describe(self) -> str:
        """Short human summary for logs: first item and count."""
        if self.files:
            first = Path(self.files[0]).name
        elif self.segments:
            first = (
                f"{Path(self.segments[0].path).name}@row{self.segments[0].first_row}"
            )
        else:
            first = "-"
        return (
            f"{first} (+{self.item_count - 1} more)" if self.item_count > 1 else first
        )


def list_input_files(path: Path, pattern: str | None = None) -> list[Path]:
    """The files of an input, in the order their results are written.

    A folder is walked recursively and sorted by relative path; hidden files
    and folders are skipped. `pattern` is a glob relative to the folder (e.g.
    `*.csv`; `**/` prefixes are allowed). Raises InputError when the path is
    missing or holds no files.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_file():
        if pattern and not path.match(pattern):
            raise InputError(f"input {path} does not match --glob {pattern}")
        return [path.resolve()]
    # os.walk with the root resolved once: resolving and globbing per file
    # cost ~3 s for 100,000 files, this ~0.1 s.
    root = path.resolve()
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder)
        relative_base = base.relative_to(root).as_posix()
        for name in names:
            if name.startswith("."):
                continue
            relative = name if relative_base == "." else f"{relative_base}/{name}"
            if pattern and not _matches(relative, pattern):
                continue
            candidate = base / name
            if candidate.is_file():
                found.append((relative, candidate))
    if not found:
        matching = f" matching {pattern}" if pattern else ""
        raise InputError(f"input folder {path} has no files{matching}")
    found.sort(key=lambda pair: pair[0])
    return [file for _, file in found]


def _matches(relative: str, pattern: str) -> bool:
    """Glob semantics of Path.rglob(pattern): match the tail of the path."""
    pure = PurePosixPath(relative)
    return pure.match(pattern) or pure.match(pattern.removeprefix("**/"))


def partition_files(files: Sequence[Path], size: MiniBatchSize) -> list[MiniBatch]:
    """Cut a file list into mini-batches of `size.count` files, keeping order."""
    if size.count is None:
        raise SpecError(
            f"mini_batch_size: {size} is a size, which applies to tabular input;"
            " file input needs a number of files such as 10"
        )
    names = [str(f) for f in files]
    return [
        MiniBatch(index=i, files=tuple(names[start : start + size.count]))
        for i, start in enumerate(range(0, len(names), size.count))
    ]


def partition_tabular(files: Sequence[Path], size: MiniBatchSize) -> list[MiniBatch]:
    """Cut CSV/Parquet files into mini-batches of rows or of about `size_bytes`.

    CSV files are split on line boundaries (quoted values spanning lines are
    not supported); a mini-batch may span files.
    Raises InputError for files that are not CSV or Parquet.
    """
    batches: list[MiniBatch] = []
    pending: list[Segment] = []
    filled = 0
    for path in files:
        suffix = path.suffix.lower()
        if suffix not in TABULAR_SUFFIXES:
            raise InputError(
                f"tabular input accepts {', '.join(TABULAR_SUFFIXES)} files, not {path}"
            )
        if suffix == ".csv":
            pieces = _csv_segments(path, size, filled)
        else:
            pieces = _parquet_segments(path, size, filled)
        for segment, amount, closes in pieces:
            pending.append(segment)
            filled += amount
            if closes:
                batches.append(MiniBatch(index=len(batches), segments=tuple(pending)))
                pending, filled = [], 0
    if pending:
        batches.append(MiniBatch(index=len(batches), segments=tuple(pending)))
    return batches


def _limit(size: MiniBatchSize) -> int:
    return size.count if size.count is not None else int(size.size_bytes or 1)


def _csv_segments(
    path: Path, size: MiniBatchSize, filled: int
) -> Iterator[tuple[Segment, int, bool]]:
    """Yield (segment, amount counted towards the mini-batch, mini-batch full)."""
    limit = _limit(size)
    by_rows = size.count is not None
    with open(path, "rb") as handle:
        handle.readline()
        start = position = handle.tell()
        first_row = row = 0
        for line in handle:
            position += len(line)
            row += 1
            used = filled + (row - first_row if by_rows else position - start)
            if used >= limit:
                amount = row - first_row if by_rows else position - start
                yield (
                    Segment(str(path), first_row, row - first_row, start, position),
                    (amount),
                    True,
                )
                start, first_row, filled = position, row, 0
        if row > first_row:
            amount = row - first_row if by_rows else position - start
            yield (
                Segment(str(path), first_row, row - first_row, start, position),
                (amount),
                False,
            )


def _parquet_segments(
    path: Path, size: MiniBatchSize, filled: int
) -> Iterator[tuple[Segment, int, bool]]:
    import pyarrow.parquet as pq

    total = pq.ParquetFile(path).metadata.num_rows
    if total == 0:
        return
    if size.count is not None:
        per_row, limit = 1, size.count
    else:
        per_row = max(1, path.stat().st_size // total)
        limit = int(size.size_bytes or 1)
    row = 0
    while row < total:
        room = max(1, (limit - filled) // per_row)
        take = min(room, total - row)
        closes = filled + take * per_row >= limit
        yield Segment(str(path), row, take), take * per_row, closes
        row += take
        filled = 0 if closes else filled + take * per_row
