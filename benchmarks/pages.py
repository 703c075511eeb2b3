"""Page-speed benchmark: studio pages of a workspace holding 10,000 jobs.

`python -m benchmarks.pages` builds a throwaway SQLite database in a temporary
folder (STUDIO_DATA_DIR points there; var/ is never touched), fills one
workspace with jobs across a few endpoints, then times GET requests through
Django's test Client and prints the median of each page against the budget.
Exit status 1 when a page misses the budget.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

BUDGET_MS = 300.0
ENDPOINTS = ("fraud-scorer", "churn", "image-tagger", "spam-filter")
# One job in this many is failed / canceled / running / queued; the rest completed.
STATUS_EVERY = {"failed": 17, "canceled": 41, "running": 499, "queued": 331}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pages")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="studio-pages-") as tmp:
        _configure(Path(tmp))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        client, pages = _populate(args.jobs)
        print(
            f"{args.jobs:,} jobs across {len(ENDPOINTS)} endpoints created in"
            f" {time.perf_counter() - started:.1f} s; median of {args.runs} GETs"
            f" per page, budget {BUDGET_MS:.0f} ms\n"
        )
        missed = 0
        for label, url in pages:
            missed += _report(label, url, lambda u=url: client.get(u), args.runs)
    return 1 if missed else 0


def _configure(data_dir: Path) -> None:
    """Settings from the environment, as in production, aimed at `data_dir`."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    os.environ.update(
        {
            "STUDIO_DATA_DIR": str(data_dir),
            "STUDIO_DATASTORE": str(data_dir / "datastore"),
            # DEBUG off: no query log, production template loaders.
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "ALLOWED_HOSTS": "testserver",
        }
    )


def _populate(job_count: int) -> tuple[Any, list[tuple[str, str | None]]]:
    """One workspace, its members, endpoints and jobs; the pages to time."""
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from studio.models import (
        BatchDeployment,
        BatchEndpoint,
        Job,
        Membership,
        ModelAsset,
        Role,
        Workspace,
    )
    from studio.views.jobs import JOBS_PER_PAGE

    with transaction.atomic():
        workspace = Workspace.objects.create(name="bench")
        users = [User.objects.create_user(f"user{n}") for n in range(5)]
        roles = [
            Role.OWNER,
            Role.CONTRIBUTOR,
            Role.CONTRIBUTOR,
            Role.READER,
            Role.READER,
        ]
        for user, role in zip(users, roles, strict=True):
            Membership.objects.create(workspace=workspace, user=user, role=role)
        model = ModelAsset.objects.create(
            workspace=workspace, name="clf", version=1, type="mlflow_model", path="/m"
        )
        deployments = []
        for name in ENDPOINTS:
            endpoint = BatchEndpoint.objects.create(
                workspace=workspace, name=name, default_deployment="blue"
            )
            deployments.append(
                BatchDeployment.objects.create(
                    endpoint=endpoint, name="blue", model=model
                )
            )
        Job.objects.bulk_create(
            (_job(Job, workspace, deployments, users, n) for n in range(job_count)),
            batch_size=1000,
        )
    client = Client()
    client.force_login(users[0])
    newest = Job.objects.order_by("-created_at", "-id").first()
    running = Job.objects.filter(status="running").first() or newest
    jobs = reverse("studio:job-list", args=[workspace.name])
    pages: list[tuple[str, str | None]] = [
        (f"jobs list, page 1 of {job_count:,}", jobs),
        ("jobs list, filtered by status + endpoint", f"{jobs}?status=failed"
         f"&endpoint={ENDPOINTS[0]}"),
        ("jobs list, last page", f"{jobs}?page={-(-job_count // JOBS_PER_PAGE)}"),
        ("job page (running job)", running.get_absolute_url()),
        ("job status JSON", reverse(
            "studio:job-status", args=[workspace.name, running.name])),
    ]  # fmt: skip
    try:
        endpoint_url = reverse(
            "studio:endpoint-detail", args=[workspace.name, ENDPOINTS[0]]
        )
    except NoReverseMatch:
        endpoint_url = None
    pages.append((f"endpoint page ({ENDPOINTS[0]})", endpoint_url))
    return client, pages


def _job(
    job_model: type, workspace: Any, deployments: list, users: list, n: int
) -> Any:
    from django.utils import timezone

    deployment = deployments[n % len(deployments)]
    status = next(
        (s for s, every in STATUS_EVERY.items() if n % every == 0 and n), "completed"
    )
    total = 10 + n % 90
    done = {"completed": total, "queued": 0, "running": total // 3}.get(
        status, total // 2
    )
    now = timezone.now()
    return job_model(
        workspace=workspace,
        name=f"{deployment.endpoint.name}-{n:06d}",
        endpoint=deployment.endpoint,
        endpoint_name=deployment.endpoint.name,
        deployment=deployment,
        deployment_label=f"{deployment.name} r{deployment.revision}",
        input={"data_asset": "features:1"},
        input_path="/data/features",
        job_dir=f"/datastore/bench/jobs/{n}",
        settings={"mini_batch_size": "10", "max_retries": 3, "timeout": 30},
        status=status,
        mini_batches_total=total,
        mini_batches_succeeded=done,
        items_succeeded=done * 10,
        created_by=users[n % len(users)],
        started_at=None if status == "queued" else now - timedelta(minutes=5),
        finished_at=now if status in ("completed", "failed", "canceled") else None,
        error="3 items failed, more than error_threshold 2"
        if status == "failed"
        else "",
    )


def _report(label: str, url: str | None, get: Callable[[], Any], runs: int) -> int:
    """Print one page's line; return 1 when it misses the budget."""
    if url is None:
        print(f"{label:<44} skipped (no such URL yet)")
        return 0
    response = get()  # warm-up: template compilation, first queries
    if response.status_code != 200:
        print(f"{label:<44} ERROR: HTTP {response.status_code} for {url}")
        return 1
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        get()
        timings.append((time.perf_counter() - started) * 1000)
    median = statistics.median(timings)
    verdict = "PASS" if median < BUDGET_MS else "MISS"
    print(
        f"{label:<44} {median:8.1f} ms  (min {min(timings):.1f}, max"
        f" {max(timings):.1f})  {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
