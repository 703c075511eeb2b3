"""Compute: the worker nodes, their heartbeats and the workspace's jobs on them."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from ..access import get_workspace_for_user
from ..models.compute import heartbeat_interval
from ..nodes import nodes_with_running_jobs


@login_required
def compute_page(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace)
    context = {
        "workspace": ws,
        "nodes": nodes_with_running_jobs(ws),
        "heartbeat_s": heartbeat_interval(),
    }
    return render(request, "studio/compute/nodes.html", context)


urlpatterns = [
    path("w/<slug:workspace>/compute/", compute_page, name="compute"),
]
