"""A job's Metrics and Errors tabs: Plotly charts from the perf logs, grouped errors."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET

from ..access import get_job_for_user
from .jobs import job_page_context


@login_required
@require_GET
def job_metrics(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    context = {**job_page_context(job), "active_tab": "metrics"}
    return render(request, "studio/jobs/metrics.html", context)


@login_required
@require_GET
def job_errors(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    context = {**job_page_context(job), "active_tab": "errors"}
    return render(request, "studio/jobs/errors.html", context)


urlpatterns = [
    path(
        "w/<slug:workspace>/jobs/<slug:name>/metrics/", job_metrics, name="job-metrics"
    ),
    path("w/<slug:workspace>/jobs/<slug:name>/errors/", job_errors, name="job-errors"),
]
