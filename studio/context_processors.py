"""Template context every page needs: the workspace's area links, job tabs."""

from __future__ import annotations

from django.http import HttpRequest

WORKSPACE_AREAS = (
    ("Models", "studio:model-list"),
    ("Data", "studio:data-list"),
    ("Environments", "studio:environment-list"),
    ("Endpoints", "studio:endpoint-list"),
    ("Jobs", "studio:job-list"),
    ("Compute", "studio:compute"),
)

JOB_TABS = (
    ("overview", "Overview", "studio:job-detail"),
    ("outputs", "Outputs + logs", "studio:job-outputs"),
    ("metrics", "Metrics", "studio:job-metrics"),
    ("errors", "Errors", "studio:job-errors"),
)


def workspace_areas(request: HttpRequest) -> dict[str, object]:
    return {"workspace_areas": WORKSPACE_AREAS, "job_tabs": JOB_TABS}
