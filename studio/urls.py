"""URL routes of the studio: login, admin, and each area's own patterns."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from .views import (
    assets,
    compute,
    endpoints,
    job_files,
    job_metrics,
    jobs,
    tokens,
    workspaces,
)

studio_patterns = [
    *workspaces.urlpatterns,
    *assets.urlpatterns,
    *endpoints.urlpatterns,
    *jobs.urlpatterns,
    *job_files.urlpatterns,
    *job_metrics.urlpatterns,
    *tokens.urlpatterns,
    *compute.urlpatterns,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("studio.api.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include((studio_patterns, "studio"))),
]
