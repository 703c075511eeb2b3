"""A job's Outputs + logs tab: the job folder as a tree, live log viewer, downloads.

Every file access goes through `jobfiles`, which keeps reads inside the job
folder and bounded; a path it refuses is a 404 that says why.
"""

from __future__ import annotations

import mimetypes
from dataclasses import asdict
from pathlib import Path

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import path
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .. import jobfiles
from ..access import get_job_for_user
from .jobs import job_page_context

TREE_LIMIT = 2000
POLL_LIMIT = 64 * 1024
SEARCH_MAX_BYTES = 256 * 1024 * 1024
SEARCH_MAX_MATCHES = 200
DEFAULT_FILE = "logs/job_progress_overview.txt"


class FileForm(forms.Form):
    """A file of the job folder, named by its relative path."""

    path = forms.CharField(max_length=1024, strip=False)


class OpenForm(forms.Form):
    path = forms.CharField(max_length=1024, strip=False, required=False)


class TailForm(FileForm):
    offset = forms.IntegerField(min_value=0, required=False)
    before = forms.IntegerField(min_value=0, required=False)
    fingerprint = forms.CharField(max_length=64, required=False)


class SearchForm(FileForm):
    q = forms.CharField(max_length=200, strip=False)


@login_required
@require_GET
def job_outputs(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    entries = jobfiles.tree(Path(job.job_dir), TREE_LIMIT)
    form = OpenForm(request.GET)
    opened = form.cleaned_data["path"] if form.is_valid() else ""
    if not opened and any(entry.path == DEFAULT_FILE for entry in entries):
        opened = DEFAULT_FILE
    context = {
        **job_page_context(job),
        "active_tab": "outputs",
        "nodes": jobfiles.nest(entries),
        "tree_truncated": len(entries) >= TREE_LIMIT,
        "tree_limit": TREE_LIMIT,
        "opened": opened,
    }
    return render(request, "studio/jobs/outputs.html", context)


@login_required
@require_GET
@never_cache
def job_file_tail(request: HttpRequest, workspace: str, name: str) -> JsonResponse:
    """?path=&offset=&fingerprint= -> what is new; ?path=&before= -> the part before."""
    job = get_job_for_user(request.user, workspace, name)
    # Read before the file: a terminal job has written its last byte, so
    # terminal plus nothing new means the file is complete.
    terminal = job.is_terminal
    form = TailForm(request.GET)
    if not form.is_valid():
        return _bad_request(form)
    data = form.cleaned_data
    job_dir = Path(job.job_dir)
    try:
        if data["before"] is not None:
            chunk = jobfiles.before(job_dir, data["path"], data["before"], POLL_LIMIT)
            reset = False
        else:
            chunk, reset = jobfiles.follow(
                job_dir, data["path"], data["offset"], data["fingerprint"], POLL_LIMIT
            )
    except OSError as exc:
        # terminal tells the viewer whether a missing file may still appear.
        return JsonResponse({"error": _reason(exc), "terminal": terminal}, status=404)
    return JsonResponse(
        {"path": data["path"], **asdict(chunk), "reset": reset, "terminal": terminal}
    )


@login_required
@require_GET
@never_cache
def job_file_search(request: HttpRequest, workspace: str, name: str) -> JsonResponse:
    job = get_job_for_user(request.user, workspace, name)
    form = SearchForm(request.GET)
    if not form.is_valid():
        return _bad_request(form)
    job_dir, relative = Path(job.job_dir), form.cleaned_data["path"]
    try:
        size = jobfiles.file_size(job_dir, relative)
        matches = jobfiles.search(
            job_dir,
            relative,
            form.cleaned_data["q"],
            SEARCH_MAX_MATCHES,
            SEARCH_MAX_BYTES,
        )
    except OSError as exc:
        return JsonResponse({"error": _reason(exc)}, status=404)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(
        {
            "path": relative,
            "matches": [asdict(match) for match in matches],
            "more": len(matches) >= SEARCH_MAX_MATCHES,
            "searched_bytes": min(size, SEARCH_MAX_BYTES),
            "size": size,
        }
    )


@login_required
@require_GET
def job_file_download(
    request: HttpRequest, workspace: str, name: str
) -> StreamingHttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    form = FileForm(request.GET)
    if not form.is_valid():
        raise Http404("name a file of the job folder with ?path=")
    try:
        snapshot = jobfiles.FileSnapshot(Path(job.job_dir), form.cleaned_data["path"])
    except OSError as exc:
        raise Http404(_reason(exc)) from exc
    content_type = mimetypes.guess_type(snapshot.name)[0] or "application/octet-stream"
    response = StreamingHttpResponse(snapshot, content_type=content_type)
    response["Content-Length"] = str(snapshot.size)
    response["Content-Disposition"] = content_disposition_header(True, snapshot.name)
    return response


@login_required
@require_GET
def job_logs_zip(
    request: HttpRequest, workspace: str, name: str
) -> StreamingHttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    response = StreamingHttpResponse(
        jobfiles.zip_logs(Path(job.job_dir)), content_type="application/zip"
    )
    response["Content-Disposition"] = content_disposition_header(
        True, f"{job.name}-logs.zip"
    )
    return response


def _reason(exc: OSError) -> str:
    """jobfiles' own message; never the system's, which may name real paths."""
    if exc.filename is None and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return "that file cannot be read from the job folder"


def _bad_request(form: forms.Form) -> JsonResponse:
    errors = "; ".join(
        f"{field}: {' '.join(messages)}" for field, messages in form.errors.items()
    )
    return JsonResponse({"error": errors}, status=400)


urlpatterns = [
    path(
        "w/<slug:workspace>/jobs/<slug:name>/outputs/", job_outputs, name="job-outputs"
    ),
    path(
        "w/<slug:workspace>/jobs/<slug:name>/outputs/tail/",
        job_file_tail,
        name="job-file-tail",
    ),
    path(
        "w/<slug:workspace>/jobs/<slug:name>/outputs/search/",
        job_file_search,
        name="job-file-search",
    ),
    path(
        "w/<slug:workspace>/jobs/<slug:name>/outputs/download/",
        job_file_download,
        name="job-file-download",
    ),
    path(
        "w/<slug:workspace>/jobs/<slug:name>/outputs/logs.zip",
        job_logs_zip,
        name="job-logs-zip",
    ),
]
