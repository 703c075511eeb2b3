"""The datastore on disk: where assets and job folders live, safe uploads and unzips."""

from __future__ import annotations

import os
import stat
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

# A zip whose entries claim more than this many times their packed size is
# refused before extraction (zip bomb).
MAX_ZIP_RATIO = 200


def datastore(*parts: str) -> Path:
    return Path(settings.STUDIO_DATASTORE).joinpath(*parts)


def confine_server_path(raw: str, field: str = "path") -> Path:
    """A server path, resolved, if it lies under one of STUDIO_ALLOWED_ROOTS.

    Raises ValidationError naming the field and the allowed roots.
    """
    roots = [Path(r).resolve() for r in settings.STUDIO_ALLOWED_ROOTS]
    if not roots:
        raise ValidationError(
            {field: "server paths are turned off: no STUDIO_ALLOWED_ROOTS configured"}
        )
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ValidationError({field: f"{raw!r} must be an absolute server path"})
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ValidationError(
            {field: f"{raw} is outside the allowed roots ({allowed})"}
        )
    if not resolved.exists():
        raise ValidationError({field: f"{raw} does not exist on the server"})
    return resolved


def new_staging_dir() -> Path:
    """A private folder to build an asset in before it is published by rename."""
    path = datastore(".staging", uuid.uuid4().hex)
    path.mkdir(parents=True)
    return path


def publish(staging: Path, destination: Path) -> Path:
    """Move a finished staging folder into place; refuse to overwrite."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        raise ValidationError(f"{destination.name} already exists; nothing was changed")
    os.rename(staging, destination)
    return destination


def save_uploads(
    files: Iterable[UploadedFile], target: Path, unzip: bool = True
) -> int:
    """Write uploaded files into `target`; a lone .zip is extracted safely.

    Returns the number of files written. Raises ValidationError for unsafe
    names, oversized uploads and unsafe archives.
    """
    files = list(files)
    limit = settings.STUDIO_MAX_UPLOAD_MB * 1024 * 1024
    if sum(f.size or 0 for f in files) > limit:
        raise ValidationError(
            f"the upload is larger than STUDIO_MAX_UPLOAD_MB"
            f" ({settings.STUDIO_MAX_UPLOAD_MB} MB)"
        )
    if unzip and len(files) == 1 and files[0].name.lower().endswith(".zip"):
        return extract_zip(files[0], target, limit)
    for upload in files:
        relative = safe_relative_path(upload.name)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open(destination, "wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
    return len(files)


def extract_zip(upload: UploadedFile, target: Path, limit: int) -> int:
    try:
        archive = zipfile.ZipFile(upload)
    except zipfile.BadZipFile:
        raise ValidationError(f"{upload.name} is not a valid zip archive") from None
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir()]
        declared = sum(e.file_size for e in entries)
        packed = max(1, sum(e.compress_size for e in entries))
        if declared > limit or declared / packed > MAX_ZIP_RATIO:
            raise ValidationError(
                f"{upload.name} unpacks to {declared} bytes; refused as a zip bomb"
            )
        names = []
        for entry in entries:
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise ValidationError(
                    f"{upload.name} holds a symbolic link ({entry.filename}); refused"
                )
            names.append(safe_relative_path(entry.filename))
        budget = limit
        for entry, relative in zip(entries, names, strict=True):
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(entry) as source, open(destination, "wb") as sink:
                # Sizes in the zip's headers can lie; count what really comes out.
                while chunk := source.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:
                        raise ValidationError(
                            f"{upload.name} unpacks to more than the upload limit;"
                            " refused as a zip bomb"
                        )
                    sink.write(chunk)
        return len(entries)


def safe_relative_path(name: str) -> Path:
    """An uploaded or archived name as a path that stays inside its folder."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ValidationError(f"{name!r} is not a safe file name (absolute or '..')")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        raise ValidationError(f"{name!r} is not a safe file name")
    return Path(*parts)


def single_top_folder(folder: Path) -> Path:
    """A zip of a folder holds that folder: step into it when it is alone."""
    children = [c for c in folder.iterdir() if not c.name.startswith(("__MACOSX", "."))]
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return folder
