"""The datastore on disk: where assets and job folders live, safe uploads and reads."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import shutil
import stat
import uuid
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

# Above RATIO_FLOOR unpacked bytes, a zip whose entries claim more than
# MAX_ZIP_RATIO times their packed size is refused before extraction (zip bomb).
MAX_ZIP_RATIO = 200
RATIO_FLOOR = 16 * 1024 * 1024
# Many tiny entries exhaust inodes and time without tripping any size limit.
MAX_ZIP_ENTRIES = 20_000
NAME_MAX = 255


@dataclass(frozen=True, order=True)
class FileEntry:
    """One entry of a bounded folder listing; size is None for folders and links."""

    name: str
    size: int | None
    kind: str  # "file", "folder" or "link"


def datastore(*parts: str) -> Path:
    return Path(settings.STUDIO_DATASTORE).joinpath(*parts)


def max_upload_bytes() -> int:
    return settings.STUDIO_MAX_UPLOAD_MB * 1024 * 1024


def _upload_limit_text() -> str:
    return f"STUDIO_MAX_UPLOAD_MB ({settings.STUDIO_MAX_UPLOAD_MB} MB)"


def _allowed_roots() -> list[Path]:
    return [Path(r).resolve() for r in settings.STUDIO_ALLOWED_ROOTS]


def confine_server_path(raw: str, field: str = "path") -> Path:
    """A server path, resolved, if it lies under one of STUDIO_ALLOWED_ROOTS.

    Symbolic links are resolved first, so a link cannot escape a root. Raises
    ValidationError naming the field and the allowed roots.
    """
    roots = _allowed_roots()
    if not roots:
        raise ValidationError(
            {field: "server paths are turned off: no STUDIO_ALLOWED_ROOTS configured"}
        )
    text = (raw or "").strip()
    if not text or "\x00" in text or not Path(text).is_absolute():
        raise ValidationError({field: f"{raw!r} must be an absolute server path"})
    try:
        resolved = Path(text).resolve()
    except (OSError, RuntimeError):
        raise ValidationError({field: f"{raw} cannot be resolved"}) from None
    allowed = ", ".join(str(r) for r in roots)
    # Existence is checked only inside the roots: outsiders learn nothing.
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ValidationError(
            {field: f"{raw} is outside the allowed roots ({allowed})"}
        )
    if resolved.is_relative_to(Path(settings.STUDIO_DATASTORE).resolve()):
        # Another workspace's files live there; register them from that workspace.
        raise ValidationError({field: f"{raw} is inside the studio's datastore"})
    if not resolved.exists():
        raise ValidationError({field: f"{raw} does not exist on the server"})
    if not (resolved.is_file() or resolved.is_dir()):
        raise ValidationError({field: f"{raw} is neither a regular file nor a folder"})
    if not os.access(resolved, os.R_OK):
        raise ValidationError({field: f"{raw} is not readable by the studio"})
    return resolved


def is_readable_location(path: Path) -> bool:
    """Whether a stored asset path still lies in the datastore or an allowed root.

    Checked again on every read: roots can be narrowed after registration.
    """
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return False
    places = [Path(settings.STUDIO_DATASTORE).resolve(), *_allowed_roots()]
    return any(resolved.is_relative_to(place) for place in places)


@contextlib.contextmanager
def staging() -> Iterator[Path]:
    """A private folder to build an asset in, removed afterwards whatever happens."""
    path = new_staging_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            # Only succeeds when no other staging folder is in use.
            path.parent.rmdir()


def new_staging_dir() -> Path:
    """A private folder to build an asset in before it is published by rename."""
    path = datastore(".staging", uuid.uuid4().hex)
    for _ in range(3):
        try:
            path.mkdir(parents=True)
            return path
        except FileNotFoundError:
            continue  # a concurrent staging() removed the empty parent meanwhile
    path.mkdir(parents=True)
    return path


def publish(staging: Path, destination: Path) -> Path:
    """Move a finished staging folder into place; refuse to overwrite."""
    if destination.exists():
        raise ValidationError(f"{destination.name} already exists; nothing was changed")
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, destination)
    return destination


def discard(path: Path) -> None:
    """Remove a published folder and the parents it leaves empty in the datastore."""
    shutil.rmtree(path, ignore_errors=True)
    root = datastore()
    for parent in path.parents:
        if parent == root or not parent.is_relative_to(root):
            break
        try:
            parent.rmdir()
        except OSError:
            break


def save_uploads(
    files: Iterable[UploadedFile],
    target: Path,
    unzip: bool = True,
    names: Sequence[str] | None = None,
) -> int:
    """Write uploaded files into `target`; a lone .zip is extracted safely.

    `names` are relative paths to store the files under (a folder upload);
    by default each file's own name. Every name is checked before anything is
    written. Returns the number of files written. Raises ValidationError for
    unsafe names, oversized uploads and unsafe archives.
    """
    files = list(files)
    names = [f.name for f in files] if names is None else list(names)
    if not files:
        raise ValidationError("no files were uploaded")
    if len(names) != len(files):
        raise ValidationError("the list of file names does not match the files sent")
    if sum(f.size or 0 for f in files) > max_upload_bytes():
        raise ValidationError(f"the upload is larger than {_upload_limit_text()}")
    if unzip and len(files) == 1 and names[0].lower().endswith(".zip"):
        return extract_zip(files[0], target, max_upload_bytes())
    relatives = [safe_relative_path(name) for name in names]
    _check_layout(relatives)
    for upload, relative in zip(files, relatives, strict=True):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open(destination, "xb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
    return len(files)


def extract_zip(upload: UploadedFile, target: Path, limit: int) -> int:
    """Unpack an uploaded zip after checking every entry's name, kind and size."""
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError):
        raise ValidationError(f"{upload.name} is not a valid zip archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise ValidationError(
                f"{upload.name} holds {len(infos)} entries; at most"
                f" {MAX_ZIP_ENTRIES} are accepted"
            )
        entries = []
        for info in infos:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ValidationError(
                    f"{upload.name} holds a symbolic link ({info.filename}); refused"
                )
            relative = safe_relative_path(info.filename)
            if not info.is_dir():
                entries.append((info, relative))
        if not entries:
            raise ValidationError(f"{upload.name} holds no files")
        _check_layout([relative for _, relative in entries])
        declared = sum(info.file_size for info, _ in entries)
        packed = max(1, sum(info.compress_size for info, _ in entries))
        if declared > limit:
            raise ValidationError(
                f"{upload.name} unpacks to {declared} bytes, more than"
                f" {_upload_limit_text()}; refused"
            )
        if declared > RATIO_FLOOR and declared > MAX_ZIP_RATIO * packed:
            raise ValidationError(
                f"{upload.name} unpacks to {declared} bytes from {packed};"
                " refused as a zip bomb"
            )
        try:
            _extract_entries(archive, entries, target, limit)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError,
                NotImplementedError, OSError) as exc:  # fmt: skip
            raise ValidationError(
                f"{upload.name} could not be unpacked: {exc}"
            ) from None
        return len(entries)


def _extract_entries(
    archive: zipfile.ZipFile,
    entries: list[tuple[zipfile.ZipInfo, Path]],
    target: Path,
    limit: int,
) -> None:
    budget = limit
    for info, relative in entries:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(destination, "xb") as sink:
            # Sizes in the zip's headers can lie; count what really comes out.
            while chunk := source.read(1 << 20):
                budget -= len(chunk)
                if budget < 0:
                    raise ValidationError(
                        f"the archive unpacks to more than {_upload_limit_text()};"
                        " refused as a zip bomb"
                    )
                sink.write(chunk)


def safe_relative_path(name: str) -> Path:
    """An uploaded or archived name as a path that stays inside its folder."""
    text = (name or "").replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or ".." in pure.parts:
        raise ValidationError(f"{name!r} is not a safe file name (absolute or '..')")
    if any(not char.isprintable() for char in text):
        raise ValidationError(f"{name!r} is not a safe file name (control characters)")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts or any(len(p.encode()) > NAME_MAX for p in parts):
        raise ValidationError(f"{name!r} is not a safe file name")
    return Path(*parts)


def _check_layout(relatives: Sequence[Path]) -> None:
    """Refuse two files with one name, or a file where a folder must go."""
    seen: set[Path] = set()
    for relative in relatives:
        if relative in seen:
            raise ValidationError(f"two files are named {relative.as_posix()!r}")
        seen.add(relative)
    for relative in relatives:
        for parent in relative.parents:
            if parent in seen:
                raise ValidationError(
                    f"{parent.as_posix()!r} is both a file and a folder"
                )


def single_top_folder(folder: Path) -> Path:
    """A zip of a folder holds that folder: step into it when it is alone."""
    children = [c for c in folder.iterdir() if not c.name.startswith(("__MACOSX", "."))]
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return folder


def check_tree(folder: Path, limit: int) -> int:
    """Refuse links, special files and more than `limit` bytes in a fetched tree."""
    total = 0
    for current, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            info = os.lstat(os.path.join(current, name))
            if stat.S_ISLNK(info.st_mode):
                raise ValidationError(f"{name} is a symbolic link; refused")
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise ValidationError(f"{name} is not a regular file; refused")
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
        if total > limit:
            raise ValidationError(f"the files are larger than {_upload_limit_text()}")
    return total


def list_files(path: Path, limit: int) -> tuple[list[FileEntry], bool]:
    """At most `limit` entries under `path`, top level first, never following links.

    Returns the entries sorted by name and whether more were left out.
    """
    if not path.is_dir():
        size = path.lstat().st_size if path.is_file() else None
        return [FileEntry(path.name, size, "file")], False
    entries: list[FileEntry] = []
    pending = deque([path])
    while pending:
        current = pending.popleft()
        try:
            with os.scandir(current) as scan:
                for item in scan:
                    if len(entries) >= limit:
                        return sorted(entries), True
                    entries.append(_entry(path, item, pending))
        except OSError:
            continue  # an unreadable subfolder: list what can be read
    return sorted(entries), False


def _entry(root: Path, item: os.DirEntry, pending: deque[Path]) -> FileEntry:
    name = Path(item.path).relative_to(root).as_posix()
    if item.is_symlink():
        return FileEntry(name, None, "link")
    if item.is_dir(follow_symlinks=False):
        pending.append(Path(item.path))
        return FileEntry(f"{name}/", None, "folder")
    return FileEntry(name, item.stat(follow_symlinks=False).st_size, "file")


def open_regular_file(path: Path) -> BinaryIO:
    """Open a regular file for reading without following a final symbolic link.

    O_NONBLOCK keeps a FIFO from blocking the request; it is refused right after.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is not a regular file")
    return os.fdopen(fd, "rb")


def read_head(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """The first `max_bytes` of a file, and whether the file goes on."""
    with open_regular_file(path) as handle:
        data = handle.read(max_bytes + 1)
    return data[:max_bytes], len(data) > max_bytes


@dataclass
class TablePreview:
    """The first rows of a CSV or Parquet file, bounded in bytes, rows and columns."""

    columns: list[str]
    rows: list[list[str]]
    more: bool
    total_rows: int | None = None


def preview_table(
    path: Path, *, max_bytes: int, max_rows: int, max_columns: int
) -> TablePreview | None:
    """The head of a .csv/.tsv or .parquet file; None for other kinds of file.

    Raises OSError or ValueError when the file cannot be read as its kind.
    """
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _preview_csv(path, max_bytes, max_rows, max_columns, suffix == ".tsv")
    if suffix in (".parquet", ".pq"):
        return _preview_parquet(path, max_bytes, max_rows, max_columns)
    return None


def _preview_csv(
    path: Path, max_bytes: int, max_rows: int, max_columns: int, tabs: bool
) -> TablePreview:
    data, more = read_head(path, max_bytes)
    if more:
        data = data[: data.rfind(b"\n") + 1]  # drop the cut-off last line
    text = data.decode("utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tabs else ",")
    try:
        rows = [row[:max_columns] for row in itertools.islice(reader, max_rows + 2)]
    except csv.Error as exc:
        raise ValueError(f"not a readable CSV file: {exc}") from None
    more = more or len(rows) > max_rows + 1
    header, body = (rows[0], rows[1 : max_rows + 1]) if rows else ([], [])
    return TablePreview(header, body, more)


def _preview_parquet(
    path: Path, max_bytes: int, max_rows: int, max_columns: int
) -> TablePreview:
    import pyarrow
    import pyarrow.parquet as pq

    with open_regular_file(path) as handle:
        try:
            # A read buffer makes pyarrow stream the first pages rather than
            # load whole column chunks.
            parquet = pq.ParquetFile(handle, buffer_size=max_bytes, pre_buffer=False)
            columns = parquet.schema_arrow.names[:max_columns]
            batches = parquet.iter_batches(batch_size=max_rows, columns=columns)
            batch = next(batches, None)
        except pyarrow.ArrowException as exc:
            raise ValueError(f"not a readable Parquet file: {exc}") from None
        total = parquet.metadata.num_rows
    rows = [] if batch is None else batch.to_pylist()
    return TablePreview(
        columns,
        [[str(row[c]) for c in columns] for row in rows],
        total > len(rows),
        total,
    )
