"""What the az ml-style commands share: acting user, errors, output (see cli_files)."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from argparse import ArgumentParser
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.management.base import CommandError, OutputWrapper
from django.http import Http404

from scoring_engine import EngineError, SpecError
from scoring_engine.config import parse_assignments

from . import access
from .models import BatchEndpoint, Job, Role, Workspace

OUTPUT_FORMATS = ("json", "tsv", "table")
# Close names are computed over at most this many names (jobs can be many).
CLOSE_NAMES_SCAN = 5000


def add_verb(verbs: Any, name: str, help_text: str) -> ArgumentParser:
    """A verb's subparser with the arguments every verb takes."""
    parser = verbs.add_parser(
        name, help=help_text, description=help_text, allow_abbrev=False
    )
    parser.add_argument(
        "--workspace",
        "-w",
        default=os.environ.get("BATCH_STUDIO_WORKSPACE", ""),
        help="workspace name (default: $BATCH_STUDIO_WORKSPACE, or your only one)",
    )
    parser.add_argument(
        "--user",
        default=os.environ.get("BATCH_STUDIO_USER", ""),
        help="the studio user acting, with that user's role (default:"
        " $BATCH_STUDIO_USER)",
    )
    parser.add_argument(
        "--query",
        default="",
        metavar="FIELD",
        help="print only this field: a dotted path such as counts.mini_batches_done",
    )
    parser.add_argument(
        "--output", "-o", choices=OUTPUT_FORMATS, default="json", help="format"
    )
    return parser


def add_name(parser: ArgumentParser, what: str) -> None:
    """`NAME` or `--name/-n NAME`: az takes the flag, a positional is shorter."""
    parser.add_argument("name", nargs="?", default="", help=f"the {what}'s name")
    parser.add_argument("--name", "-n", dest="name_option", default="", help="same")


def name_of(options: Mapping[str, Any], what: str) -> str:
    name = options.get("name_option") or options.get("name") or ""
    if not name:
        raise CommandError(f"name: give the {what}'s name (NAME or --name NAME)")
    return name


@dataclass
class Caller:
    """The acting user and workspace; access.py applies the browser's rules."""

    user: Any
    workspace_name: str

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Caller:
        username = options.get("user") or ""
        if not username:
            raise CommandError(
                "no acting user: give --user NAME or set BATCH_STUDIO_USER; the"
                " command acts with that user's role, as in the browser"
            )
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not user.is_active:
            raise CommandError(f"user '{username}' not found or not active")
        name = options.get("workspace") or ""
        if not name:
            names = list(
                Workspace.objects.for_user(user).values_list("name", flat=True)
            )
            if len(names) != 1:
                raise CommandError(
                    "no workspace: give --workspace NAME or set"
                    f" BATCH_STUDIO_WORKSPACE (yours: {', '.join(names) or 'none'})"
                )
            name = names[0]
        return cls(user, name)

    def workspace(self, role: str = Role.READER) -> Workspace:
        with service_errors():
            return access.get_workspace_for_user(self.user, self.workspace_name, role)

    def endpoint(self, name: str, role: str = Role.READER) -> BatchEndpoint:
        return self._find(access.get_endpoint_for_user, BatchEndpoint, name, role)

    def job(self, name: str, role: str = Role.READER) -> Job:
        return self._find(access.get_job_for_user, Job, name, role)

    def _find(
        self, getter: Callable[..., Any], model: type, name: str, role: str
    ) -> Any:
        try:
            return getter(self.user, self.workspace_name, name, role)
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        except Http404 as exc:
            # Only members reach the lookup of names: outsiders learn nothing.
            workspace = Workspace.objects.for_user(self.user).filter(
                name=self.workspace_name
            )
            names = model.objects.filter(workspace__in=workspace).order_by("-pk")
            found = names.values_list("name", flat=True)[:CLOSE_NAMES_SCAN]
            raise CommandError(f"{exc}{close_names(name, found)}") from None


def close_names(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(names)), n=3)
    return f"; close names: {', '.join(close)}" if close else ""


@contextlib.contextmanager
def service_errors(fields: Mapping[str, str] | None = None) -> Iterator[None]:
    """Refusals of the services, access.py and the engine as one-line CommandErrors.

    `fields` maps a service's field names to what the command calls them
    (an option such as --input); "" drops the field from the message.
    """
    try:
        yield
    except ValidationError as exc:
        raise CommandError(validation_message(exc, fields or {})) from None
    except (PermissionDenied, Http404, EngineError) as exc:
        raise CommandError(one_line(str(exc))) from None


def validation_message(exc: ValidationError, fields: Mapping[str, str]) -> str:
    if not hasattr(exc, "error_dict"):
        return one_line("; ".join(exc.messages))
    parts = []
    for field, messages in exc.message_dict.items():
        label = fields.get(field, field)
        for message in messages:
            named = message.startswith((f"{field}:", f"{label}:"))
            if field == NON_FIELD_ERRORS or not label or named:
                parts.append(message)
            else:
                parts.append(f"{label}: {message}")
    return one_line("; ".join(parts))


def one_line(text: str) -> str:
    return " ".join(text.split())


def parse_value(raw: str) -> Any:
    """A --set value as az reads it: JSON when it parses (5, true, [..]), else text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def key_values(pairs: Sequence[str], option: str) -> dict[str, str]:
    try:
        return parse_assignments(list(pairs))
    except SpecError as exc:
        raise CommandError(str(exc).replace("--set", option, 1)) from None


def asset_dict(asset: Any, **fields: Any) -> dict[str, Any]:
    """What every versioned asset shows, then its own `fields`."""
    return {
        "name": asset.name,
        "version": asset.version,
        "id": f"azureml:{asset.name}:{asset.version}",
        "description": asset.description,
        "tags": asset.tags,
        **fields,
        "created_by": username(asset.created_by),
        "created_at": isotime(asset.created_at),
        "studio_url": asset.get_absolute_url(),
    }


def isotime(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def username(user: Any) -> str | None:
    return user.get_username() if user else None


def emit(
    stdout: OutputWrapper,
    value: Any,
    options: Mapping[str, Any],
    columns: Sequence[str] = (),
) -> None:
    """Print `value` as -o asks, after --query; `columns` narrow a table."""
    query = options.get("query") or ""
    if query:
        value = pick(value, query.split("."), query)
    stdout.write(render(value, options.get("output") or "json", columns))


def pick(value: Any, parts: list[str], query: str) -> Any:
    """Follow a dotted path; on a list, the path applies to each element."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(value, list):
        if head.isdigit():
            if int(head) >= len(value):
                raise CommandError(f"--query {query}: no element {head}")
            return pick(value[int(head)], rest, query)
        return [pick(item, parts, query) for item in value]
    if isinstance(value, dict):
        if head not in value:
            raise CommandError(
                f"--query {query}: no field '{head}'; fields: {', '.join(value)}"
            )
        return pick(value[head], rest, query)
    raise CommandError(f"--query {query}: '{head}' is not inside a mapping")


def render(value: Any, output: str, columns: Sequence[str] = ()) -> str:
    if output == "json":
        return json.dumps(value, indent=2, default=str)
    rows = value if isinstance(value, list) else [value]
    if output == "tsv":
        return "\n".join(_tsv_line(row) for row in rows)
    return _table(rows, columns)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value).replace("\t", " ").replace("\n", " ")


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _tsv_line(row: Any) -> str:
    """az's tsv: a mapping's scalar values in order, a list's elements, a value."""
    if isinstance(row, dict):
        return "\t".join(_cell(v) for v in row.values() if _scalar(v))
    if isinstance(row, list):
        return "\t".join(_cell(v) for v in row)
    return _cell(row)


def _table(rows: list[Any], columns: Sequence[str]) -> str:
    if not rows:
        return ""
    if not all(isinstance(row, dict) for row in rows):
        rows = [{"Result": row} for row in rows]
    names = list(columns) or [k for k, v in rows[0].items() if _scalar(v)]
    names = [n for n in names if any(n in row for row in rows)]
    cells = [[_cell(row.get(n)) for n in names] for row in rows]
    widths = [max(len(n), *(len(r[i]) for r in cells)) for i, n in enumerate(names)]
    lines = [names, ["-" * w for w in widths], *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def add_list_and_show(verbs: Any, noun: str, article: str) -> None:
    """The `list` and `show` verbs every versioned asset has."""
    listing = add_verb(verbs, "list", f"Latest version of each {noun}.")
    listing.add_argument("--name", "-n", default="", help="all its versions")
    show = add_verb(verbs, "show", f"Show {article} {noun} version.")
    show.add_argument("--name", "-n", required=True)
    show.add_argument("--version", "-v", type=int, default=0)
    show.add_argument("--label", "-l", choices=["latest"], default="latest")


def list_versions(
    stdout: OutputWrapper,
    options: Mapping[str, Any],
    model: type,
    to_dict: Callable[[Any], dict[str, Any]],
    columns: Sequence[str],
) -> None:
    """`list`: the latest version of each name, or every version of `--name`."""
    from .services.assets import latest_versions

    workspace = Caller.from_options(options).workspace()
    if options["name"]:
        assets = model.objects.filter(workspace=workspace, name=options["name"])
        assets = assets.select_related("created_by").order_by("-version")
    else:
        assets = latest_versions(model, workspace)
    rows = []
    for asset in assets:
        asset.workspace = workspace
        rows.append(to_dict(asset))
    emit(stdout, rows, options, columns)


def show_version(
    stdout: OutputWrapper,
    options: Mapping[str, Any],
    model: type,
    kind: str,
    to_dict: Callable[[Any], dict[str, Any]],
    columns: Sequence[str],
) -> None:
    """`show`: one version (`--version`), or the latest."""
    from .services.endpoints import resolve_versioned

    workspace = Caller.from_options(options).workspace()
    reference = options["name"]
    if options["version"]:
        reference = f"{reference}:{options['version']}"
    with service_errors({kind: ""}):
        asset = resolve_versioned(model, kind, workspace, reference)
    emit(stdout, to_dict(asset), options, columns)
