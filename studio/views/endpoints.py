"""Batch endpoints, their deployment revisions, and invoking them from the browser."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from ..access import can, get_endpoint_for_user, get_workspace_for_user
from ..forms import show_service_errors
from ..forms.endpoints import (
    DeploymentForm,
    EndpointForm,
    InvokeForm,
    SetDefaultForm,
    setting_initial,
)
from ..models import BatchDeployment, BatchEndpoint, Job, Role, Workspace
from ..services.endpoints import (
    create_deployment,
    create_endpoint,
    delete_endpoint,
    set_default_deployment,
)
from ..services.invoke import invoke

JOB_COLUMNS = (
    "name", "status", "deployment_label", "created_at", "started_at", "finished_at",
    "mini_batches_total", "mini_batches_succeeded", "mini_batches_failed",
    "items_succeeded", "items_failed", "workspace_id",
)  # fmt: skip
RECENT_JOBS = 10


@login_required
def endpoint_list(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace)
    page = Paginator(_endpoints_with_default(ws), 25).get_page(request.GET.get("page"))
    context = {"workspace": ws, "page": page, "can_edit": can(ws, Role.CONTRIBUTOR)}
    return render(request, "studio/endpoints/list.html", context)


def _endpoints_with_default(ws: Workspace) -> QuerySet[BatchEndpoint]:
    """Endpoints with their default deployment's current revision and model."""
    current = BatchDeployment.objects.filter(
        endpoint=OuterRef("pk"), name=OuterRef("default_deployment")
    ).order_by("-revision")
    return BatchEndpoint.objects.filter(workspace=ws).annotate(
        default_revision=Subquery(current.values("revision")[:1]),
        default_model=Subquery(current.values("model__name")[:1]),
        default_model_version=Subquery(current.values("model__version")[:1]),
    )


@login_required
def endpoint_create(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace, Role.CONTRIBUTOR)
    form = EndpointForm(*_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = create_endpoint(ws, request.user, **form.cleaned_data)
        except ValidationError as exc:
            show_service_errors(form, exc)
        else:
            messages.success(request, f"Created batch endpoint {endpoint.name}.")
            return redirect(endpoint)
    return render(
        request, "studio/endpoints/create.html", {"workspace": ws, "form": form}
    )


@login_required
def endpoint_detail(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    endpoint = get_endpoint_for_user(request.user, workspace, name)
    deployments = endpoint.deployments.select_related(
        "model", "environment", "created_by"
    )
    jobs = Job.objects.filter(endpoint=endpoint).only(*JOB_COLUMNS)[:RECENT_JOBS]
    context = {
        "workspace": endpoint.workspace,
        "endpoint": endpoint,
        "deployments": deployments.order_by("name", "-revision"),
        "jobs": jobs,
        "can_edit": can(endpoint.workspace, Role.CONTRIBUTOR),
    }
    return render(request, "studio/endpoints/detail.html", context)


@login_required
@require_POST
def endpoint_delete(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    endpoint = get_endpoint_for_user(request.user, workspace, name, Role.CONTRIBUTOR)
    try:
        delete_endpoint(endpoint)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(endpoint)
    messages.success(
        request, f"Deleting batch endpoint {name}; its name is free once it is gone."
    )
    return redirect("studio:endpoint-list", workspace)


@login_required
@require_POST
def endpoint_set_default(
    request: HttpRequest, workspace: str, name: str
) -> HttpResponse:
    endpoint = get_endpoint_for_user(request.user, workspace, name, Role.CONTRIBUTOR)
    form = SetDefaultForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError("choose a deployment")
        set_default_deployment(endpoint, form.cleaned_data["deployment"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request, f"Default deployment is now {endpoint.default_deployment}."
        )
    return redirect(endpoint)


@login_required
def deployment_create(
    request: HttpRequest, workspace: str, endpoint: str
) -> HttpResponse:
    """A new deployment, or with ?from=<name> its next revision, prefilled."""
    ep = get_endpoint_for_user(request.user, workspace, endpoint, Role.CONTRIBUTOR)
    source = request.GET.get("from", "")
    base = ep.current_deployment(source) if source else None
    initial = DeploymentForm.initial_from(base) if base else {}
    form = DeploymentForm(*_posted(request), endpoint=ep, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            deployment = create_deployment(ep, request.user, **form.service_kwargs())
        except ValidationError as exc:
            show_service_errors(form, exc)
        else:
            messages.success(request, f"Saved {deployment}.")
            return redirect(_deployment_url(deployment, ep))
    context = {"workspace": ep.workspace, "endpoint": ep, "form": form, "base": base}
    return render(request, "studio/endpoints/deployment_form.html", context)


@login_required
def deployment_detail(
    request: HttpRequest, workspace: str, endpoint: str, name: str, revision: int
) -> HttpResponse:
    ep = get_endpoint_for_user(request.user, workspace, endpoint)
    revisions = ep.deployments.filter(name=name).select_related("model", "environment")
    deployment = next((d for d in revisions if d.revision == revision), None)
    if deployment is None:
        raise Http404(
            f"batch deployment '{name}' revision {revision} not found on endpoint"
            f" '{ep.name}'"
        )
    jobs = Job.objects.filter(deployment=deployment).only(*JOB_COLUMNS)[:RECENT_JOBS]
    context = {
        "workspace": ep.workspace,
        "endpoint": ep,
        "deployment": deployment,
        "settings": setting_initial(deployment.settings),
        "revisions": revisions,
        "jobs": jobs,
        "can_edit": can(ep.workspace, Role.CONTRIBUTOR),
    }
    return render(request, "studio/endpoints/deployment_detail.html", context)


@login_required
def endpoint_invoke(request: HttpRequest, workspace: str, name: str) -> HttpResponse:
    endpoint = get_endpoint_for_user(request.user, workspace, name, Role.CONTRIBUTOR)
    form = InvokeForm(*_posted(request), endpoint=endpoint)
    if request.method == "POST" and form.is_valid():
        try:
            job = invoke(endpoint, request.user, **form.service_kwargs())
        except ValidationError as exc:
            show_service_errors(form, exc)
        else:
            messages.success(request, f"Job {job.name} is queued.")
            return redirect("studio:job-detail", workspace, job.name)
    context = {"workspace": endpoint.workspace, "endpoint": endpoint, "form": form}
    return render(request, "studio/endpoints/invoke.html", context)


def _posted(request: HttpRequest) -> tuple[Any, Any]:
    """A form's data and files: bound on any POST, even an empty one."""
    if request.method != "POST":
        return None, None
    return request.POST, request.FILES


def _deployment_url(deployment: BatchDeployment, endpoint: BatchEndpoint) -> str:
    return reverse(
        "studio:deployment-detail",
        args=[
            endpoint.workspace.name,
            endpoint.name,
            deployment.name,
            deployment.revision,
        ],
    )


_endpoint = "w/<slug:workspace>/endpoints/<slug:name>/"
_deployments = "w/<slug:workspace>/endpoints/<slug:endpoint>/"
urlpatterns = [
    path("w/<slug:workspace>/endpoints/", endpoint_list, name="endpoint-list"),
    # "-" can never be an endpoint name, so this route cannot shadow one.
    path(
        "w/<slug:workspace>/endpoints/-/new/", endpoint_create, name="endpoint-create"
    ),
    path(_endpoint, endpoint_detail, name="endpoint-detail"),
    path(f"{_endpoint}delete/", endpoint_delete, name="endpoint-delete"),
    path(f"{_endpoint}default/", endpoint_set_default, name="endpoint-set-default"),
    path(f"{_endpoint}invoke/", endpoint_invoke, name="endpoint-invoke"),
    path(f"{_deployments}deploy/", deployment_create, name="deployment-create"),
    path(
        f"{_deployments}deployments/<slug:name>/<int:revision>/",
        deployment_detail,
        name="deployment-detail",
    ),
]
