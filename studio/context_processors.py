"""Template context every page needs: the workspace's area links."""

from __future__ import annotations

from django.http import HttpRequest

WORKSPACE_AREAS = (
    ("Models", "studio:model-list"),
    ("Data", "studio:data-list"),
    ("Environments", "studio:environment-list"),
    ("Endpoints", "studio:endpoint-list"),
    ("Jobs", "studio:job-list"),
)


def workspace_areas(request: HttpRequest) -> dict[str, object]:
    return {"workspace_areas": WORKSPACE_AREAS}
