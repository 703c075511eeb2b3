"""Routes of the REST API under /api/: workspace-scoped resources, schema, docs."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from . import views
from .serializers import ENDPOINT_NAME, WORKSPACE_NAME

app_name = "api"

_ws = f"workspaces/(?P<workspace>{WORKSPACE_NAME})"
router = SimpleRouter()
router.register("workspaces", views.WorkspaceViewSet, basename="workspace")
router.register(f"{_ws}/models", views.ModelViewSet, basename="model")
router.register(f"{_ws}/data", views.DataViewSet, basename="data")
router.register(f"{_ws}/environments", views.EnvironmentViewSet, basename="environment")
router.register(f"{_ws}/endpoints", views.EndpointViewSet, basename="endpoint")
router.register(
    f"{_ws}/endpoints/(?P<endpoint>{ENDPOINT_NAME})/deployments",
    views.DeploymentViewSet,
    basename="deployment",
)
router.register(f"{_ws}/jobs", views.JobViewSet, basename="job")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
]
