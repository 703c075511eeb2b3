"""Files the az ml-style commands read: Azure YAML with line numbers, local uploads."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.management.base import CommandError

from scoring_engine import SpecError
from scoring_engine.config import refuse_unknown
from scoring_engine.errors import YAML_FAILURES, yaml_problem

from .cli import key_values, one_line, parse_value, validation_message
from .models import Workspace


@dataclass
class YamlFile:
    """A YAML file's mapping, with the line each field is on, for messages."""

    path: Path
    data: dict[str, Any]
    lines: dict[str, int]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def refuse(self, message: str) -> CommandError:
        """The message with the file's name and, when it names a field, its line."""
        field = message.split(":", 1)[0].strip()
        candidates = (field, f"settings.{field}", f"resources.{field}")
        line = next((self.lines[c] for c in candidates if c in self.lines), None)
        where = f"{self.path.name}, line {line}" if line else self.path.name
        return CommandError(one_line(f"{where}: {message}"))

    @contextlib.contextmanager
    def refusals(self, fields: Mapping[str, str] | None = None) -> Iterator[None]:
        """Engine and service refusals, with this file's name and the field's line."""
        try:
            yield
        except SpecError as exc:
            raise self.refuse(str(exc)) from None
        except ValidationError as exc:
            raise self.refuse(validation_message(exc, fields or {})) from None

    def local_path(self, raw: str, field: str) -> Path:
        """A path relative to the file's folder, as in Azure; it must exist."""
        path = (self.folder / Path(raw).expanduser()).resolve()
        if not path.exists():
            raise self.refuse(f"{field}: {path} does not exist")
        return path

    def check_fields(self, allowed: tuple[str, ...]) -> None:
        try:
            refuse_unknown(self.data, allowed, "")
        except SpecError as exc:
            raise self.refuse(str(exc)) from None

    def text(self, field: str, required: str = "") -> str:
        """A string field; `required` is what to say when it is missing."""
        value = self.data.get(field)
        if value is None or value == "":
            if required:
                raise self.refuse(f"{field}: {required}")
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.refuse(f"{field}: must be text, not {value!r}")
        return str(value)

    def tags(self) -> dict[str, str]:
        value = self.data.get("tags") or {}
        if not isinstance(value, Mapping):
            raise self.refuse(f"tags: must be a mapping of key: value, not {value!r}")
        return {str(k): "" if v is None else str(v) for k, v in value.items()}

    def set(
        self, pairs: Sequence[str], place: Callable[[str], str] = lambda key: key
    ) -> None:
        """Apply `--set a.b=value` (az's dotted paths); `place` may relocate a key."""
        for key, raw in key_values(pairs, "--set").items():
            path = place(key)
            target = self.data
            parts = path.split(".")
            for index, part in enumerate(parts[:-1]):
                if target.get(part) is None:
                    target[part] = {}
                target = target[part]
                if not isinstance(target, dict):
                    inner = ".".join(parts[: index + 1])
                    raise CommandError(f"--set {key}: {inner} is not a mapping")
            target[parts[-1]] = parse_value(raw)
            self.lines.pop(path, None)


def document_from(options: Mapping[str, Any], flags: Mapping[str, str]) -> YamlFile:
    """`--file` (or, without one, the command line) with flags and --set applied.

    `flags` maps option names to the fields they give; paths on the command
    line are relative to the working folder.
    """
    if options.get("file"):
        document = load_yaml(options["file"])
    else:
        document = YamlFile(Path.cwd() / "command line", {}, {})
    for option, field in flags.items():
        if options.get(option):
            document.data[field] = options[option]
            document.lines.pop(field, None)
    document.set(options.get("set") or [])
    return document


def load_yaml(raw_path: str) -> YamlFile:
    """Read a YAML mapping; malformed YAML is refused with its line and column."""
    path = Path(raw_path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(
            f"--file {raw_path}: cannot read it ({exc.strerror})"
        ) from None
    except UnicodeDecodeError:
        raise CommandError(f"--file {raw_path}: not a UTF-8 text file") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is not None:
            _field_lines(node, "", lines, path.name)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "malformed"
        raise CommandError(f"{path.name}{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise CommandError(
            f"{path.name}: not valid YAML: {one_line(str(exc))}"
        ) from None
    except CommandError:
        raise
    except YAML_FAILURES as exc:
        raise CommandError(
            f"{path.name}: not valid YAML: {yaml_problem(exc)}"
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise CommandError(f"{path.name}: must be a YAML mapping of fields")
    return YamlFile(path.resolve(), data, lines)


def _field_lines(
    node: yaml.Node, prefix: str, lines: dict[str, int], name: str
) -> None:
    """Record the line of every mapping key; a key given twice is refused."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        path = f"{prefix}{key_node.value}"
        line = key_node.start_mark.line + 1
        if path in seen:
            raise CommandError(f"{name}, line {line}: {path}: given twice")
        seen.add(path)
        lines[path] = line
        _field_lines(value_node, f"{path}.", lines, name)


def check_version(model: type, workspace: Workspace, name: str, version: Any) -> None:
    """The studio numbers versions itself: a file's `version` must be the next one."""
    if version in (None, ""):
        return
    expected = model.objects.next_version(workspace, name)
    if str(version) != str(expected):
        raise CommandError(
            f"version: '{name}' gets version {expected} next, not {version}; versions"
            f" are numbered in order: omit version or give {expected}"
        )


class LocalFile(UploadedFile):
    """A file on this machine handed to a service as an upload; open while read.

    Opening lazily keeps a folder of thousands of files within the limit of
    open files; the services copy it into the datastore as any upload.
    """

    def __init__(self, path: Path) -> None:
        self._handle: Any = None
        self.path = path
        super().__init__(file=None, name=path.name, size=path.stat().st_size)

    @property
    def file(self) -> Any:
        if self._handle is None:
            self._handle = self.path.open("rb")
        return self._handle

    @file.setter
    def file(self, value: Any) -> None:
        self._handle = value

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        try:
            yield from super().chunks(chunk_size)
        finally:
            self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@contextlib.contextmanager
def local_files(
    root: Path,
    ignore: Callable[[str, list[str]], set[str]] | None = None,
    in_folder: bool = False,
) -> Iterator[tuple[list[LocalFile], list[str]]]:
    """A local file, or a folder's regular files with their paths in it.

    With `in_folder` the paths start with the folder's own name, as a
    browser's folder upload sends them: the services step into that folder.
    """
    if root.is_file():
        paths, names = [root], [root.name]
    else:
        paths = []
        for current, dirs, files in os.walk(root):
            skipped = ignore(current, dirs + files) if ignore else set()
            dirs[:] = sorted(d for d in dirs if d not in skipped)
            found = [Path(current, f) for f in sorted(files) if f not in skipped]
            paths += [p for p in found if p.is_file()]
        top = Path(root.name) if in_folder else Path()
        names = [(top / p.relative_to(root)).as_posix() for p in paths]
    files = [LocalFile(p) for p in paths]
    try:
        yield files, names
    finally:
        for file in files:
            file.close()
