"""Read-only access to a job folder: file tree, byte-offset log tail, search, zip.

Every path a caller names is resolved inside the job folder: no `..`, no
absolute path, nothing whose real path (symlinks followed) leaves the folder.
Every read is bounded: nothing here reads a whole file into memory, so a 1 GB
log opens as fast as a small one. The Outputs + logs tab and `manage.py job
stream` share these functions; nothing here needs Django.

Cursors are byte offsets. A chunk never splits a UTF-8 sequence and prefers
whole lines: `tail` holds back a partial last line (the writer is still
writing it) unless the chunk has no complete line at all, in which case the
bytes it has are returned (a final line without a newline, or one line longer
than the limit), cut at a character boundary.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import stat
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

TAIL_LIMIT = 64 * 1024
FINGERPRINT_BYTES = 4096
SEARCH_BLOCK = 1024 * 1024
COPY_BLOCK = 1024 * 1024
MATCH_LINE_CHARS = 500
LOG_FOLDERS = ("azureml-logs", "logs")
_NEWLINE = b"\n"


@dataclass(frozen=True)
class Chunk:
    """A slice of one file."""

    text: str  # decoded utf-8 with errors="replace"
    start: int  # byte offset of text's first byte
    end: int  # byte offset just past the last byte returned: the next cursor
    size: int  # file size when read
    # The file's inode and a checksum of the bytes just before `end`: passed
    # back to follow(), it tells a follower whether its cursor still applies
    # (a summary replaced whole with os.replace does not keep its bytes).
    fingerprint: str = ""


@dataclass(frozen=True)
class Entry:
    """One file or folder of the job folder; symlinks are listed, never followed."""

    path: str  # relative, posix
    is_dir: bool
    size: int
    modified: float
    is_link: bool = False

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def depth(self) -> int:
        return self.path.count("/")


@dataclass
class Node:
    """An entry with its children, for rendering the tree."""

    entry: Entry
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True)
class Match:
    """A line holding the searched text; line_no is None when unknown."""

    line_no: int | None  # 1-based; known only when the search started at byte 0
    offset: int  # byte offset of the line's start: tail() from here shows it
    line: str


def resolve(job_dir: Path, relative: str) -> Path:
    """The real path of `relative` inside the job folder.

    Raises PermissionError for '..', absolute paths, NUL bytes and anything
    whose real path leaves the folder (symlinks included); FileNotFoundError
    when nothing is there. Messages never name the real path.
    """
    pure = PurePosixPath(relative)
    if not relative or "\x00" in relative or pure.is_absolute() or ".." in pure.parts:
        raise PermissionError(f"'{relative}' is not a path inside the job folder")
    root = Path(os.path.realpath(job_dir))
    real = Path(os.path.realpath(root.joinpath(*pure.parts)))
    if not _inside(real, root):
        raise PermissionError(f"'{relative}' leads outside the job folder")
    if not real.exists():
        raise FileNotFoundError(f"no file '{relative}' in the job folder")
    return real


def file_size(job_dir: Path, relative: str) -> int:
    with _open(job_dir, relative) as file:
        return os.fstat(file.fileno()).st_size


def tail(
    job_dir: Path, relative: str, offset: int | None = None, limit: int = TAIL_LIMIT
) -> Chunk:
    """The bytes from `offset` on, at most `limit` of them, ending on a whole line.

    offset None opens at the end: the last `limit` bytes, from the first line
    that starts in them. An offset past the end means the file was truncated
    or replaced by a shorter one: read as if offset were None.
    """
    with _open(job_dir, relative) as file:
        return _tail(file, offset, limit)


def before(job_dir: Path, relative: str, end: int, limit: int = TAIL_LIMIT) -> Chunk:
    """The part just before byte `end`, at most `limit` bytes, from a line start."""
    if end < 0:
        raise ValueError("end must be 0 or more")
    limit = max(limit, 4)
    with _open(job_dir, relative) as file:
        size = os.fstat(file.fileno()).st_size
        end = min(end, size)
        start = max(0, end - limit)
        lead = 1 if start else 0
        data = _read_at(file, start - lead, end - start + lead)
        data = data[: _char_end(data)]
        skip = _line_start(data, lead)
        data, start = data[skip:], start - lead + skip
        end = start + len(data)
        return Chunk(_decode(data), start, end, size, _fingerprint(file, end))


def follow(
    job_dir: Path,
    relative: str,
    offset: int | None,
    fingerprint: str | None = None,
    limit: int = TAIL_LIMIT,
) -> tuple[Chunk, bool]:
    """The next chunk for a reader at `offset`, and whether the reader starts over.

    `fingerprint` is the one of the chunk that ended at `offset`. Starting
    over (the chunk is then the file's end, as for offset None) happens on the
    first read and when the file no longer holds what the reader saw: it was
    truncated, or replaced whole.
    """
    with _open(job_dir, relative) as file:
        if (
            offset is not None
            and fingerprint
            and fingerprint != _fingerprint(file, offset)
        ):
            offset = None
        chunk = _tail(file, offset, limit)
    return chunk, offset is None or offset > chunk.size


def search(
    job_dir: Path,
    relative: str,
    needle: str,
    max_matches: int = 200,
    max_bytes: int = 256 * 1024 * 1024,
) -> list[Match]:
    """Lines holding `needle`, case-insensitive, in file order, one match per line.

    Reads the file in blocks. A file larger than `max_bytes` is searched in
    its last `max_bytes` only (the recent part of a log), and line numbers are
    then unknown. Stops after `max_matches` lines. Raises ValueError for an
    empty or multi-line needle.
    """
    if not needle or "\n" in needle or "\r" in needle:
        raise ValueError("the search text must be one non-empty line")
    find = _finder(needle)
    matches: list[Match] = []
    with _open(job_dir, relative) as file:
        size = os.fstat(file.fileno()).st_size
        position = max(0, size - max_bytes)
        if position:
            head = _read_at(file, position - 1, min(SEARCH_BLOCK, size - position) + 1)
            position += _line_start(head, 1) - 1
        line_no: int | None = 1 if position == 0 else None
        file.seek(position)
        carry = b""
        while position < size and len(matches) < max_matches:
            block = file.read(min(SEARCH_BLOCK, size - position))
            if not block:
                break
            data, base = carry + block, position - len(carry)
            position += len(block)
            # Whole lines only, so a match is never cut in two; a line with no
            # newline within a block is searched in block-sized pieces.
            cut = len(data) if position >= size else data.rfind(_NEWLINE) + 1
            cut = cut or len(data)
            data, carry = data[:cut], data[cut:]
            line_no = _collect(data, base, line_no, find, matches, max_matches)
    return matches


def tree(job_dir: Path, max_entries: int = 2000) -> list[Entry]:
    """The job folder's files and folders, depth first, folders before files.

    At most `max_entries` entries; hidden names (engine state such as
    `.state/`) are left out; a missing folder (job not started) is empty.
    """
    root = Path(job_dir)
    return list(_walk(root, root, max_entries))


def nest(entries: list[Entry]) -> list[Node]:
    """Depth-first entries (as `tree` returns them) -> top-level nodes."""
    top: list[Node] = []
    folders: dict[str, Node] = {}
    for entry in entries:
        node = Node(entry)
        parent = folders.get(entry.path.rpartition("/")[0])
        (parent.children if parent else top).append(node)
        if entry.is_dir:
            folders[entry.path] = node
    return top


class FileSnapshot:
    """A file's bytes up to its size when opened, in blocks; close() when done.

    A log still growing is sent as it was when the download started, so the
    announced size stays true.
    """

    def __init__(self, job_dir: Path, relative: str) -> None:
        self.name = PurePosixPath(relative).name
        self._file = _open(job_dir, relative)
        self.size = os.fstat(self._file.fileno()).st_size

    def __iter__(self) -> Iterator[bytes]:
        yield from _copy_blocks(self._file, self.size)

    def close(self) -> None:
        self._file.close()


def zip_logs(job_dir: Path) -> Iterator[bytes]:
    """A zip of the logs/ and azureml-logs/ folders, produced piece by piece.

    zipfile writes into a small sink that is emptied after every block, so
    memory stays at about one block however large the folders are. Each file
    is taken up to its size when reached; symlinks are skipped.
    """
    sink = _Sink()
    root = Path(job_dir)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder in LOG_FOLDERS:
            for entry in _walk(root, root / folder, None):
                if entry.is_dir or entry.is_link:
                    continue
                try:
                    file = _open(root, entry.path)
                except OSError:
                    continue  # gone since listed
                with file:
                    size = os.fstat(file.fileno()).st_size
                    info = zipfile.ZipInfo(entry.path, _zip_time(entry.modified))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.file_size = size
                    with archive.open(info, "w") as member:
                        for block in _copy_blocks(file, size):
                            member.write(block)
                            yield sink.take()
                yield sink.take()
    yield sink.take()


class _Sink(io.RawIOBase):
    """Collects what zipfile writes; not seekable, so zipfile streams."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _open(job_dir: Path, relative: str) -> io.FileIO:
    """Open a regular file inside the job folder for reading.

    Scoring scripts write into the job folder, so a path checked by resolve()
    could be swapped for a symlink before the open: O_NOFOLLOW refuses a
    symlinked last component, and the opened file's path is checked again
    where the system tells it. O_NONBLOCK keeps a FIFO from hanging a request.
    """
    real = resolve(job_dir, relative)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(real, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"'{relative}' is a folder, not a file")
        if not stat.S_ISREG(mode):
            raise PermissionError(f"'{relative}' is not a regular file")
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")  # Linux only
        except OSError:
            opened = None
        if opened and not _inside(Path(opened), Path(os.path.realpath(job_dir))):
            raise PermissionError(f"'{relative}' leads outside the job folder")
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _walk(root: Path, folder: Path, limit: int | None) -> Iterator[Entry]:
    """Entries under `folder` (paths relative to `root`), depth first, at most
    `limit`; symlinks are listed, never followed."""
    produced = 0
    stack = [_children(folder, limit)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        if limit is not None and produced >= limit:
            return
        try:
            info = item.stat(follow_symlinks=False)
        except OSError:
            continue  # removed since listed
        is_dir = stat.S_ISDIR(info.st_mode)
        relative = Path(item.path).relative_to(root).as_posix()
        produced += 1
        yield Entry(
            relative, is_dir, info.st_size, info.st_mtime, stat.S_ISLNK(info.st_mode)
        )
        if is_dir:
            stack.append(_children(Path(item.path), limit))


def _children(folder: Path, limit: int | None) -> Iterator[os.DirEntry[str]]:
    """A folder's visible entries, folders first, then by name.

    With a limit, at most that many are read from one folder, so a folder of
    a million files costs no more than the listing shows.
    """
    try:
        with os.scandir(folder) as scan:
            visible = (item for item in scan if not item.name.startswith("."))
            found = list(itertools.islice(visible, limit))
    except OSError:
        return iter(())  # missing or unreadable: shown empty
    found.sort(key=lambda item: (not item.is_dir(follow_symlinks=False), item.name))
    return iter(found)


def _tail(file: io.FileIO, offset: int | None, limit: int) -> Chunk:
    if offset is not None and offset < 0:
        raise ValueError("offset must be 0 or more")
    limit = max(limit, 4)  # room for one whole UTF-8 character
    size = os.fstat(file.fileno()).st_size
    if offset is None or offset > size:
        start = max(0, size - limit)
        lead = 1 if start else 0  # the byte before tells if start is a line start
        data = _read_at(file, start - lead, size - start + lead)
        start -= lead
        skip = _line_start(data, lead)
    else:
        start = offset
        data = _read_at(file, start, min(limit, size - start))
        skip = _char_start(data)
    data, start = data[skip:], start + skip
    data = data[: _complete_lines(data)]
    end = start + len(data)
    return Chunk(_decode(data), start, end, size, _fingerprint(file, end))


def _fingerprint(file: io.FileIO, end: int) -> str:
    """The file's inode and a checksum of the (up to) 4 KB before `end`."""
    window = _read_at(
        file, max(0, end - FINGERPRINT_BYTES), min(end, FINGERPRINT_BYTES)
    )
    return f"{os.fstat(file.fileno()).st_ino:x}-{zlib.crc32(window):08x}"


def _read_at(file: io.FileIO, offset: int, length: int) -> bytes:
    file.seek(offset)
    parts = []
    while length > 0:
        block = file.read(length)
        if not block:
            break
        parts.append(block)
        length -= len(block)
    return b"".join(parts)


def _copy_blocks(file: io.FileIO, size: int) -> Iterator[bytes]:
    file.seek(0)
    remaining = size
    while remaining > 0:
        block = file.read(min(COPY_BLOCK, remaining))
        if not block:
            return
        remaining -= len(block)
        yield block


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _char_start(data: bytes) -> int:
    """Bytes to skip so `data` starts on a character (at most 3)."""
    skip = 0
    while skip < min(3, len(data)) and _is_continuation(data[skip]):
        skip += 1
    return skip


def _char_end(data: bytes) -> int:
    """Length of `data` without a trailing, incomplete UTF-8 sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if _is_continuation(byte):
            continue
        needed = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return len(data) - back if needed > back else len(data)
    return len(data)


def _line_start(data: bytes, lead: int) -> int:
    """Where the first line starting after `data[:lead]` begins (0 when lead is 0).

    `lead` is the one byte read before the wanted start, which tells whether
    that start is already a line start. When `data` holds no line start before
    its end (part of one long line), start at the first character after the
    lead instead: something is always returned.
    """
    if not lead:
        return 0
    newline = data.find(_NEWLINE)
    if 0 <= newline < len(data) - 1:
        return newline + 1
    return lead + _char_start(data[lead:])


def _complete_lines(data: bytes) -> int:
    """Length of `data` up to its last complete line, or up to its last whole
    character when it holds no complete line."""
    last = data.rfind(_NEWLINE)
    return last + 1 if last >= 0 else _char_end(data)


def _finder(needle: str):  # noqa: ANN202 - returns a generator function
    """A function yielding the byte indices where `needle` occurs in a block."""
    if needle.isascii():
        wanted = needle.lower().encode()

        def find_ascii(data: bytes) -> Iterator[int]:
            haystack = data.lower()  # bytes.lower() touches ASCII letters only
            index = haystack.find(wanted)
            while index >= 0:
                yield index
                index = haystack.find(wanted, index + 1)

        return find_ascii
    pattern = re.compile(re.escape(needle), re.IGNORECASE)

    def find_text(data: bytes) -> Iterator[int]:
        # surrogateescape round-trips any bytes, so byte offsets stay exact.
        text = data.decode("utf-8", errors="surrogateescape")
        chars = offset = 0
        for found in pattern.finditer(text):
            offset += len(
                text[chars : found.start()].encode("utf-8", "surrogateescape")
            )
            chars = found.start()
            yield offset

    return find_text


def _collect(
    data: bytes,
    base: int,
    line_no: int | None,
    find,  # noqa: ANN001
    matches: list[Match],
    max_matches: int,
) -> int | None:
    """Add the lines of `data` (at file offset `base`) holding a match; return
    the line number of the line after `data`."""
    counted = 0  # data[:counted] has been counted into line_no
    line_end = -1
    for index in find(data):
        if index <= line_end:
            continue  # one match per line
        line_start = data.rfind(_NEWLINE, 0, index) + 1
        line_end = data.find(_NEWLINE, index)
        line_end = len(data) if line_end < 0 else line_end
        if line_no is not None:
            line_no += data.count(_NEWLINE, counted, line_start)
            counted = line_start
        line = _decode(data[line_start:line_end]).rstrip("\r")[:MATCH_LINE_CHARS]
        matches.append(Match(line_no, base + line_start, line))
        if len(matches) >= max_matches:
            return line_no
    if line_no is not None:
        line_no += data.count(_NEWLINE, counted)
    return line_no


def _zip_time(modified: float) -> tuple[int, int, int, int, int, int]:
    moment = time.localtime(modified)[:6]
    return max(moment, (1980, 1, 1, 0, 0, 0))  # the zip format starts in 1980
