"""The studio's fixtures (isolated datastore, inline tasks, the cast) here too."""

from __future__ import annotations

from tests.studio.conftest import cast, studio_settings  # noqa: F401 - fixtures
