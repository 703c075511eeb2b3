"""Views of the endpoints area (being built)."""

from __future__ import annotations

urlpatterns: list = []
