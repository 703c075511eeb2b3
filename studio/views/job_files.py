"""A job's Outputs + logs tab: the job folder as a tree, live log viewer, downloads."""

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
def job_outputs(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    context = {**job_page_context(job), "active_tab": "outputs"}
    return render(request, "studio/jobs/outputs.html", context)


urlpatterns = [
    path(
        "w/<slug:workspace>/jobs/<slug:name>/outputs/", job_outputs, name="job-outputs"
    ),
]
