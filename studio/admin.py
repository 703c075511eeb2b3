"""Operators' admin: declarative ModelAdmins over every studio model."""

from __future__ import annotations

from django.contrib import admin

from .models import (
    ApiToken,
    BatchDeployment,
    BatchEndpoint,
    DataAsset,
    Environment,
    Job,
    Membership,
    ModelAsset,
    Node,
    Workspace,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    inlines = [MembershipInline]


@admin.register(ModelAsset, DataAsset, Environment)
class AssetAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "workspace", "created_at"]
    list_filter = ["workspace"]


@admin.register(BatchEndpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "state", "default_deployment"]


@admin.register(BatchDeployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["endpoint", "name", "revision", "model", "created_at"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "endpoint_name", "status", "created_at"]
    readonly_fields = ["heartbeat_at", "runs"]
    list_filter = ["status", "workspace"]
    list_select_related = ["workspace"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Operators can see and revoke tokens; secrets are never stored."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "cluster", "last_seen", "workers", "cpu_pct", "memory_pct"]
