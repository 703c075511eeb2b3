"""Views of the jobs area (being built)."""

from __future__ import annotations

urlpatterns: list = []
