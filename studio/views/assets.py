"""Registry pages: models, data assets and environments (lists, details, register)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Model
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods, require_safe

from .. import storage
from ..access import (
    can,
    get_data_for_user,
    get_environment_for_user,
    get_model_for_user,
    get_workspace_for_user,
)
from ..forms import show_service_errors
from ..forms.assets import DataRegisterForm, EnvironmentCreateForm, ModelRegisterForm
from ..models import DataAsset, Environment, ModelAsset, Role, Workspace
from ..models.assets import VersionedAsset
from ..services import assets

PER_PAGE = 50
# Detail pages read bounded slices only, however large the asset.
MODEL_FILES_LISTING = 100
FOLDER_LISTING = 50
PREVIEW_BYTES = 64 * 1024
PREVIEW_ROWS = 20
PREVIEW_COLUMNS = 30


@login_required
@require_safe
def model_list(request: HttpRequest, workspace: str) -> HttpResponse:
    return _list(request, workspace, ModelAsset, "model_list")


@login_required
@require_safe
def model_detail(
    request: HttpRequest, workspace: str, name: str, version: int
) -> HttpResponse:
    model = get_model_for_user(request.user, workspace, name, version)
    info = model.mlflow or {}
    return _detail(
        request,
        model,
        "model_detail",
        files=_listing(model.path, MODEL_FILES_LISTING),
        inputs=signature_rows(info.get("signature_inputs")),
        outputs=signature_rows(info.get("signature_outputs")),
    )


@login_required
@require_http_methods(["GET", "POST"])
def model_register(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace, Role.CONTRIBUTOR)
    form = _bind(request, ModelRegisterForm)
    mlflow_on = bool(settings.STUDIO_MLFLOW_TRACKING_URI)
    return _register(request, ws, form, assets.register_model, "model_register",
                     mlflow_on=mlflow_on, mlflow_off=assets.MLFLOW_OFF)  # fmt: skip


@login_required
@require_safe
def data_list(request: HttpRequest, workspace: str) -> HttpResponse:
    return _list(request, workspace, DataAsset, "data_list")


@login_required
@require_safe
def data_detail(
    request: HttpRequest, workspace: str, name: str, version: int
) -> HttpResponse:
    data = get_data_for_user(request.user, workspace, name, version)
    return _detail(request, data, "data_detail", preview=data_preview(data))


@login_required
@require_http_methods(["GET", "POST"])
def data_register(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace, Role.CONTRIBUTOR)
    form = _bind(request, DataRegisterForm)
    return _register(request, ws, form, assets.register_data, "data_register")


@login_required
@require_safe
def environment_list(request: HttpRequest, workspace: str) -> HttpResponse:
    return _list(request, workspace, Environment, "environment_list")


@login_required
@require_safe
def environment_detail(
    request: HttpRequest, workspace: str, name: str, version: int
) -> HttpResponse:
    environment = get_environment_for_user(request.user, workspace, name, version)
    return _detail(request, environment, "environment_detail")


@login_required
@require_http_methods(["GET", "POST"])
def environment_create(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace, Role.CONTRIBUTOR)
    form = _bind(request, EnvironmentCreateForm)
    return _register(request, ws, form, assets.create_environment, "environment_create")


def _list(
    request: HttpRequest, workspace: str, model: type[Model], template: str
) -> HttpResponse:
    ws = get_workspace_for_user(request.user, workspace)
    rows = assets.latest_versions(model, ws)
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    context = {"workspace": ws, "page": page, "can_register": can(ws, Role.CONTRIBUTOR)}
    return render(request, f"studio/assets/{template}.html", context)


def _detail(
    request: HttpRequest, asset: VersionedAsset, template: str, **context: Any
) -> HttpResponse:
    versions = (
        type(asset)
        .objects.filter(workspace=asset.workspace, name=asset.name)
        .select_related("created_by")
        .order_by("-version")
    )
    context.update(workspace=asset.workspace, asset=asset, versions=versions)
    return render(request, f"studio/assets/{template}.html", context)


def _bind(request: HttpRequest, form_class: type[Form]) -> Any:
    if request.method == "POST":
        return form_class(request.POST, request.FILES)
    return form_class()


def _register(
    request: HttpRequest,
    ws: Workspace,
    form: Any,
    service: Callable[..., VersionedAsset],
    template: str,
    **context: Any,
) -> HttpResponse:
    """Validate the form, call the service, and show any refusal on the form."""
    if form.is_bound and form.is_valid():
        try:
            asset = service(ws, request.user, **form.service_arguments())
        except ValidationError as exc:
            show_service_errors(form, exc)
        else:
            messages.success(request, f"Registered {asset}.")
            return redirect(asset)
    context.update(
        workspace=ws,
        form=form,
        max_upload_mb=settings.STUDIO_MAX_UPLOAD_MB,
        max_upload_files=settings.DATA_UPLOAD_MAX_NUMBER_FILES,
    )
    return render(request, f"studio/assets/{template}.html", context)


def signature_rows(spec: Any) -> list[dict[str, str]]:
    """An MLflow signature's column or tensor specs as name / type / detail rows."""
    if not isinstance(spec, list):
        return []
    rows = []
    for column in spec:
        if not isinstance(column, dict):
            continue
        tensor = column.get("tensor-spec") or {}
        if tensor:
            detail = f"shape {tensor.get('shape')}"
        else:
            detail = "required" if column.get("required", True) else "optional"
        kind = tensor.get("dtype") or column.get("type", "")
        rows.append(
            {"name": str(column.get("name", "")), "type": kind, "detail": detail}
        )
    return rows


def _listing(raw_path: str, limit: int) -> dict[str, Any] | None:
    """A bounded listing of an asset's files; None when they cannot be read."""
    path = Path(raw_path)
    if not storage.is_readable_location(path) or not path.exists():
        return None
    entries, more = storage.list_files(path, limit)
    return {"entries": entries, "more": more, "limit": limit}


def data_preview(asset: DataAsset) -> dict[str, Any]:
    """What the data page shows: a URL, a folder's first entries, a file's rows."""
    if asset.is_url:
        return {"kind": "url"}
    path = Path(asset.path)
    if asset.type == DataAsset.Type.FOLDER or not path.is_file():
        listing = _listing(asset.path, FOLDER_LISTING)
        return {"kind": "folder" if listing else "missing", "listing": listing}
    if not storage.is_readable_location(path):
        return {"kind": "missing"}
    try:
        size = path.stat().st_size
        table = storage.preview_table(
            path, max_bytes=PREVIEW_BYTES, max_rows=PREVIEW_ROWS,
            max_columns=PREVIEW_COLUMNS,
        )  # fmt: skip
    except (OSError, ValueError) as exc:
        return {"kind": "error", "error": str(exc)}
    return {"kind": "table" if table else "file", "table": table, "size": size}


_ws = "w/<slug:workspace>"
urlpatterns = [
    path(f"{_ws}/models/", model_list, name="model-list"),
    path(f"{_ws}/models/register/", model_register, name="model-register"),
    path(f"{_ws}/models/<str:name>/<int:version>/", model_detail, name="model-detail"),
    path(f"{_ws}/data/", data_list, name="data-list"),
    path(f"{_ws}/data/register/", data_register, name="data-register"),
    path(f"{_ws}/data/<str:name>/<int:version>/", data_detail, name="data-detail"),
    path(f"{_ws}/environments/", environment_list, name="environment-list"),
    path(
        f"{_ws}/environments/create/",
        environment_create,
        name="environment-create",
    ),
    path(
        f"{_ws}/environments/<str:name>/<int:version>/",
        environment_detail,
        name="environment-detail",
    ),
]
