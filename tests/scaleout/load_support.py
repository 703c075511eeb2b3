"""Helpers of the load tests (test_load.py); no tests of its own.

`watch` runs one engine job in a subprocess and samples it from outside;
`invoke_at_once` and `report` run on the node side, inside `manage.py shell`
(see test_postgres_redis.py), where the studio talks to PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
from django.contrib.auth.models import User
from django.db import connection
from django_q.models import Failure, Success

from studio.models import BatchEndpoint, Job, Membership, Role, Workspace
from studio.services.invoke import invoke

USERS, JOBS_EACH = 4, 5
SAMPLE_EVERY_S = 0.05


def write_tiny_files(folder: Path, count: int) -> list[str]:
    """`count` one-line files named so that name order is number order."""
    folder.mkdir(parents=True)
    names = [f"item_{number:06d}.txt" for number in range(count)]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for number, name in enumerate(names):
        descriptor = os.open(folder / name, flags, 0o644)
        try:
            os.write(descriptor, b"%d\n" % number)
        finally:
            os.close(descriptor)
    return names


@dataclass(frozen=True)
class Overview:
    """What job_progress_overview.txt said when it was read."""

    status: str
    processed: int
    total: int


def read_overview(path: Path) -> Overview | None:
    """The progress overview's counts; None before it exists."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    status = re.search(r"^Status: (\S+)", text, re.M)
    total = re.search(r"^Mini-batches created: (\d+)", text, re.M)
    processed = re.search(r"^Mini-batches processed: (\d+)", text, re.M)
    # Written whole (temp file + rename), so every field is there.
    assert status and total and processed, text
    return Overview(status[1], int(processed[1]), int(total[1]))


@dataclass
class Watched:
    """One run of a command, sampled every SAMPLE_EVERY_S while it ran."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float
    samples: int
    overviews: list[Overview] = field(default_factory=list)


def watch(command: list[str], cwd: Path, logs: Path, overview: Path) -> Watched:
    """Run `command`; sample its own RSS (not its children's) and `overview`.

    Output goes to files under `logs`, so a chatty process never blocks on a
    full pipe while this loop is sampling.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    peak, samples, seen = 0, 0, []
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr)
    watched = psutil.Process(process.pid)
    try:
        while process.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            samples += 1
            snapshot = read_overview(overview)
            if snapshot is not None and process.poll() is None:
                seen.append(snapshot)
            time.sleep(SAMPLE_EVERY_S)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Watched(
        returncode=returncode,
        stdout=out.read_text(),
        stderr=err.read_text(),
        wall_s=time.perf_counter() - started,
        peak_rss_mb=peak / 2**20,
        samples=samples,
        overviews=seen,
    )


def invoke_at_once() -> None:
    """Node side: USERS contributors of `team` each invoke JOBS_EACH jobs at once.

    One thread per user, released together, so the invocations arrive as
    they would from several people at the same moment: their order is
    whatever the race makes it, not one user's batch after another's.
    """
    workspace = Workspace.objects.get(name="team")
    users = [User.objects.create_user(f"user{n}") for n in range(USERS)]
    Membership.objects.bulk_create(
        Membership(workspace=workspace, user=user, role=Role.CONTRIBUTOR)
        for user in users
    )
    start = threading.Barrier(USERS)
    errors: list[BaseException] = []

    def invoke_as(user: User) -> None:
        try:
            endpoint = BatchEndpoint.objects.get(workspace=workspace, name="texts")
            start.wait(timeout=30)
            for number in range(JOBS_EACH):
                invoke(
                    endpoint,
                    user,
                    data_asset="texts:1",
                    job_name=f"{user.username}-job{number}",
                )
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=invoke_as, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def report() -> None:
    """Node side: every job with its user and times, and django-q's results, as JSON."""
    jobs = Job.objects.order_by("created_at", "id").values(
        "name",
        "status",
        "error",
        "items_succeeded",
        "job_dir",
        "created_by__username",
        "started_at",
        "finished_at",
    )
    tasks = {"func": "studio.tasks.run_job_task"}
    seen = {
        "jobs": list(jobs),
        "successes": Success.objects.filter(**tasks).count(),
        "failures": Failure.objects.filter(**tasks).count(),
    }
    print(json.dumps(seen, default=datetime.isoformat))


def users_kept_waiting(jobs: list[dict]) -> list[tuple[str, str]]:
    """(user, other) pairs where user's first job started after other's last ended.

    Jobs carry `created_by__username` and ISO `started_at` / `finished_at`.
    """
    first_start: dict[str, datetime] = {}
    last_finish: dict[str, datetime] = {}
    for job in jobs:
        user = job["created_by__username"]
        started = datetime.fromisoformat(job["started_at"])
        finished = datetime.fromisoformat(job["finished_at"])
        first_start[user] = min(first_start.get(user, started), started)
        last_finish[user] = max(last_finish.get(user, finished), finished)
    return [
        (user, other)
        for user in sorted(first_start)
        for other in sorted(last_finish)
        if user != other and first_start[user] > last_finish[other]
    ]
