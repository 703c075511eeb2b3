"""Studio fixtures: an isolated datastore, inline tasks, and the fixed cast of users."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_q.conf import Conf

from studio.models import Membership, Role, Workspace

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def studio_settings(settings, tmp_path, monkeypatch):
    """Every test gets its own datastore and runs django-q tasks inline."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STUDIO_DATASTORE = tmp_path / "datastore"
    settings.STUDIO_ENV_CACHE = tmp_path / "environments"
    settings.STUDIO_NODE_NAME = "node-a"
    server = tmp_path / "server"
    server.mkdir()
    settings.STUDIO_ALLOWED_ROOTS = [server]
    monkeypatch.setattr(Conf, "SYNC", True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    return settings


@dataclass
class Cast:
    """A workspace with owner, contributor and reader; an outsider elsewhere."""

    workspace: Workspace
    other_workspace: Workspace
    owner: User
    contributor: User
    reader: User
    outsider: User

    def client(self, who: str) -> Client:
        client = Client()
        client.force_login(getattr(self, who))
        return client


@pytest.fixture
def cast(db) -> Cast:
    workspace = Workspace.objects.create(name="team", description="The team")
    other = Workspace.objects.create(name="elsewhere")
    users = {}
    for role in ("owner", "contributor", "reader", "outsider"):
        users[role] = User.objects.create_user(role, password=PASSWORD)
    for role in (Role.OWNER, Role.CONTRIBUTOR, Role.READER):
        Membership.objects.create(workspace=workspace, user=users[role], role=role)
    Membership.objects.create(workspace=other, user=users["outsider"], role=Role.OWNER)
    return Cast(workspace=workspace, other_workspace=other, **users)
