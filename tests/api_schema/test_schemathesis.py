"""Schemathesis against a live studio: no request the schema allows gets a 5xx.

Every operation of /api/schema/ is called with generated inputs, valid
(positive) and invalid (negative), as a workspace owner. Path parameters are
pinned to seeded objects, all named `scorer`, so requests reach the services
instead of stopping at a 404; deletions run last for the same reason.

Hypothesis drives each operation directly: schemathesis's own pytest
integration (`from_fixture`) fails on pytest 9 (`Function._nodeid`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from studio.models import ApiToken
from studio.services.assets import create_environment
from studio.services.invoke import invoke
from tests.studio.test_endpoints_deployments import (
    make_custom_model,
    make_data,
    make_endpoint,
    make_script_deployment,
)

MAX_EXAMPLES = 20
SEEDED = "scorer"
PINNED: dict[str, Any] = {
    "workspace": "team",
    "name": SEEDED,
    "endpoint": SEEDED,
    "version": 1,
    "revision": 1,
}


def seed(cast: Any) -> None:
    """A model, data asset, environment, endpoint, deployment and job: `scorer`."""
    make_custom_model(cast.workspace, SEEDED)
    make_data(cast.workspace, SEEDED)
    create_environment(cast.workspace, cast.owner, name=SEEDED)
    endpoint = make_endpoint(cast.workspace, cast.owner, SEEDED)
    make_script_deployment(endpoint, cast.owner, name=SEEDED)
    invoke(endpoint, cast.owner, data_asset=f"{SEEDED}:1", job_name=SEEDED)


def run_operation(
    operation: Any, mode: GenerationMode, token: str, statuses: Counter[int]
) -> None:
    """Call `operation` with up to MAX_EXAMPLES generated cases, counting statuses."""
    pinned = {k: v for k, v in PINNED.items() if f"{{{k}}}" in operation.path}
    if operation.path == "/api/workspaces/{name}/":
        pinned["name"] = PINNED["workspace"]

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(operation.as_strategy(mode, path_parameters=pinned))
    def check(case: Any) -> None:
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
        )
        statuses[response.status_code] += 1

    check()


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(cast, live_server, monkeypatch):
    # Jobs stay queued: a generated URL input must never be fetched (no
    # network), and scoring runs would only slow the test down.
    monkeypatch.setattr("studio.services.jobs.async_task", lambda *a, **k: None)
    seed(cast)
    _, token = ApiToken.objects.issue(cast.owner, "schemathesis")
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: (op.method.upper() == "DELETE", op.path, op.method),
    )

    statuses: Counter[int] = Counter()
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                run_operation(operation, mode, token, statuses)
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure
                failures.append(f"{operation.label} ({mode}): {exc}")

    print(
        f"schemathesis: {len(operations)} operations,"
        f" {statuses.total()} requests, statuses {sorted(statuses.items())}"
    )
    assert len(operations) >= 30
    assert not failures, "\n\n".join(failures)
