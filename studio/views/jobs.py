"""Jobs: the list, a job's page, its live status as JSON, cancel and resume."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from ..access import can, get_job_for_user, get_workspace_for_user
from ..forms.endpoints import SETTING_HELP
from ..models import Job, JobStatus, Role
from ..nodes import job_nodes
from ..services.jobs import can_resume, cancel_job, job_status, resume_job

JOBS_PER_PAGE = 50
# The list's columns and progress bar need only these; the JSON blobs
# (input, settings, overrides, tags) and error text stay in the database.
LIST_FIELDS = (
    "name",
    "status",
    "cancel_requested",
    "endpoint",
    "endpoint_name",
    "deployment_label",
    "mini_batches_total",
    "mini_batches_succeeded",
    "mini_batches_failed",
    "created_at",
    "started_at",
    "finished_at",
    "created_by__username",
)


class JobFilterForm(forms.Form):
    """The list's filters; an unknown value is reported and that filter ignored."""

    status = forms.ChoiceField(
        choices=[("", "Any status"), *JobStatus.choices], required=False
    )
    endpoint = forms.ChoiceField(required=False)

    def __init__(self, data: object, endpoint_names: list[str]) -> None:
        super().__init__(data)
        self.fields["endpoint"].choices = [("", "Any endpoint")] + [
            (name, name) for name in endpoint_names
        ]

    def filter(self, jobs: QuerySet[Job]) -> QuerySet[Job]:
        self.is_valid()
        if status := self.cleaned_data.get("status"):
            jobs = jobs.filter(status=status)
        if endpoint := self.cleaned_data.get("endpoint"):
            jobs = jobs.filter(endpoint_name=endpoint)
        return jobs


class ResumeForm(forms.Form):
    """Settings a resumed job may change; an empty field keeps the job's value.

    The engine checks the values (services.jobs.resume_job), as at invoke.
    """

    mini_batch_error_threshold = forms.CharField(required=False)
    error_threshold = forms.CharField(required=False)
    max_retries = forms.CharField(required=False)
    timeout = forms.CharField(required=False)

    def __init__(self, *args: object, job: Job, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # The YAML names and help, as on the invoke form.
        for name, field in self.fields.items():
            field.label, field.help_text = name, SETTING_HELP[name]
            field.widget.attrs["placeholder"] = job.settings.get(name, "")

    def overrides(self) -> dict[str, str]:
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}


@login_required
@require_GET
def job_list(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace)
    jobs = Job.objects.for_workspace(ws)
    endpoint_names = sorted(
        set(jobs.order_by().values_list("endpoint_name", flat=True).distinct())
    )
    form = JobFilterForm(request.GET, endpoint_names)
    listed = form.filter(jobs).select_related("created_by").only(*LIST_FIELDS)
    page = Paginator(listed, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"workspace": ws, "form": form, "page_obj": page}
    return render(request, "studio/jobs/list.html", context)


@login_required
@require_GET
def job_detail(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name)
    context = {
        **job_page_context(job),
        "settings_rows": _settings_rows(job),
        "job_nodes": job_nodes(job),
    }
    if context["can_resume"]:
        context["resume_form"] = ResumeForm(job=job)
    return render(request, "studio/jobs/detail.html", context)


def job_page_context(job: Job) -> dict[str, object]:
    """What every tab of a job's page needs for its header."""
    return {
        "workspace": job.workspace,
        "job": job,
        "can_cancel": can(job.workspace, Role.CONTRIBUTOR) and not job.is_terminal,
        "can_resume": can(job.workspace, Role.CONTRIBUTOR) and can_resume(job),
    }


@login_required
@require_GET
@never_cache
def job_status_json(request: HttpRequest, workspace: str, name: str) -> JsonResponse:
    job = get_job_for_user(request.user, workspace, name)
    return JsonResponse(job_status(job))


@login_required
@require_POST
def job_cancel(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name, role=Role.CONTRIBUTOR)
    try:
        cancel_job(job)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"Job {job.name} canceled."
            if job.status == JobStatus.CANCELED
            else f"Cancel requested: job {job.name} stops its scoring processes"
            " within a few seconds.",
        )
    return redirect(job)


@login_required
@require_POST
def job_resume(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    job = get_job_for_user(request.user, workspace, name, role=Role.CONTRIBUTOR)
    try:
        resume_job(job, ResumeForm(request.POST, job=job).overrides())
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"Job {job.name} resumed: only the mini-batches it had not committed"
            " run again.",
        )
    return redirect(job)


def _settings_rows(job: Job) -> list[tuple[str, object, bool]]:
    """(setting, effective value, overridden for this job?) in stored order."""
    # Overrides may use the YAML's dotted names (retry_settings.timeout).
    overridden = {key.rsplit(".", 1)[-1] for key in job.overrides}
    return [(key, value, key in overridden) for key, value in job.settings.items()]


urlpatterns = [
    path("w/<slug:workspace>/jobs/", job_list, name="job-list"),
    path("w/<slug:workspace>/jobs/<slug:name>/", job_detail, name="job-detail"),
    path(
        "w/<slug:workspace>/jobs/<slug:name>/status/",
        job_status_json,
        name="job-status",
    ),
    path("w/<slug:workspace>/jobs/<slug:name>/cancel/", job_cancel, name="job-cancel"),
    path("w/<slug:workspace>/jobs/<slug:name>/resume/", job_resume, name="job-resume"),
]
