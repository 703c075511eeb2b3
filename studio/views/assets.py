"""Views of the assets area (being built)."""

from __future__ import annotations

urlpatterns: list = []
