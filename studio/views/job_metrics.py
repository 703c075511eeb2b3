"""A job's Metrics and Errors tabs: Plotly charts from the perf logs, grouped errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .. import charts, perflogs
from ..access import get_job_for_user
from ..models import Job
from .jobs import job_page_context


@login_required
@require_GET
def job_metrics(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    metrics = metrics_payload(job)
    context = {
        **job_page_context(job),
        "active_tab": "metrics",
        "metrics": metrics,
        "resources_note": _resources_note(job, metrics["monitored"]),
        "resource_charts": charts.RESOURCE_CHARTS,
        "mini_batch_charts": charts.MINI_BATCH_CHARTS,
    }
    return render(request, "studio/jobs/metrics.html", context)


@login_required
@require_GET
@never_cache
def job_metrics_data(request: HttpRequest, workspace: str, name: str) -> JsonResponse:
    job = get_job_for_user(request.user, workspace, name)
    return JsonResponse(metrics_payload(job))


@login_required
@require_GET
def job_errors(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    report = perflogs.read_errors(Path(job.job_dir))
    context = {**job_page_context(job), "active_tab": "errors", "report": report}
    return render(request, "studio/jobs/errors.html", context)


def metrics_payload(job: Job) -> dict[str, Any]:
    """The Metrics tab's data: fresh figure dicts by chart key, and the status."""
    job_dir = Path(job.job_dir)
    perf = perflogs.read_perf(job_dir)
    return {
        "status": job.status,
        "terminal": job.is_terminal,
        "monitored": perf is not None,
        "charts": charts.job_figures(perf, perflogs.read_mini_batches(job_dir)),
    }


def _resources_note(job: Job, monitored: bool) -> str:
    """Why the resource charts cannot show, or "" when they can (or soon will)."""
    if monitored:
        return ""
    if job.settings.get("resource_monitor_interval", 600) == 0:
        return (
            "Resource monitoring was off for this job (resource_monitor_interval: 0),"
            " so there are no CPU, memory or disk samples. A deployment with"
            " an interval in seconds records them."
        )
    if job.is_terminal:
        return "No resource samples were recorded for this job."
    return ""


urlpatterns = [
    path(
        "w/<slug:workspace>/jobs/<slug:name>/metrics/", job_metrics, name="job-metrics"
    ),
    path(
        "w/<slug:workspace>/jobs/<slug:name>/metrics/data/",
        job_metrics_data,
        name="job-metrics-data",
    ),
    path("w/<slug:workspace>/jobs/<slug:name>/errors/", job_errors, name="job-errors"),
]
