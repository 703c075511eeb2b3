"""Home (the user's workspaces), a workspace's overview and its members."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from ..access import get_workspace_for_user
from ..models import BatchEndpoint, Job, Membership, Workspace


@login_required
def home(request: HttpRequest) -> HttpResponse:
    workspaces = Workspace.objects.for_user(request.user)
    return render(request, "studio/home.html", {"workspaces": workspaces})


@login_required
def workspace_overview(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace)
    context = {
        "workspace": ws,
        "endpoints": BatchEndpoint.objects.filter(workspace=ws)[:10],
        "jobs": Job.objects.for_workspace(ws).only(
            "name", "status", "endpoint_name", "created_at", "workspace_id"
        )[:10],
        "members": Membership.objects.filter(workspace=ws).select_related("user"),
    }
    return render(request, "studio/workspace.html", context)


urlpatterns = [
    path("", home, name="home"),
    path("w/<slug:workspace>/", workspace_overview, name="workspace"),
]
