"""Task pick-up latency (enqueue -> task start) of django-q2's ORM and Redis brokers.

`python -m benchmarks.brokers [--tasks 50]` starts a real `manage.py qcluster`
per configuration (the studio's own Q_CLUSTER: 2 workers, queue_limit 1,
poll 0.2 s) and enqueues trivial tasks from another process, each carrying
its enqueue time; the task returns how long ago that was.

- one at a time: a random 0.25-0.45 s gap between tasks, so each finds the
  cluster idle and the ORM broker's poll phase is sampled evenly;
- burst: all tasks enqueued at once; latency then includes queueing.

Configurations: ORM broker on SQLite (one machine, the default), ORM broker
on PostgreSQL, Redis broker with PostgreSQL (scale-out). PostgreSQL and Redis
are the machine's own on localhost: a throwaway database and cluster name per
run, removed after. Module level imports only the standard library: the
cluster's workers import this module to run `picked_up`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_URL = "redis://127.0.0.1:6379/15"
TASK = "benchmarks.brokers.picked_up"
WARMUP = 3
# Left out of the inherited environment: each configuration sets its own.
SCALEOUT_VARS = ("DATABASE_URL", "STUDIO_REDIS_URL", "STUDIO_CLUSTER_NAME")


def picked_up(enqueued_at: float) -> float:
    """The task: seconds since it was enqueued (same machine, same clock)."""
    return time.time() - enqueued_at


def measure(tasks: int, burst: bool) -> list[float]:
    """Enqueuer side (Django set up): enqueue, wait for results, latencies in s."""
    from django_q.models import Success
    from django_q.tasks import async_task

    group = f"bench-{uuid.uuid4().hex[:8]}"
    pace = random.Random(1)
    for _ in range(tasks):
        async_task(TASK, time.time(), group=group)
        if not burst:
            time.sleep(pace.uniform(0.25, 0.45))
    deadline = time.monotonic() + 60 + tasks
    done = Success.objects.filter(group=group)
    while done.count() < tasks:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done.count()} of {tasks} tasks ran in time")
        time.sleep(0.1)
    return [float(result) for result in done.values_list("result", flat=True)]


def _enqueuer_main(tasks: int) -> None:
    import django

    django.setup()
    measure(WARMUP, burst=False)
    print(
        json.dumps(
            {
                "one at a time": measure(tasks, burst=False),
                "burst": measure(tasks, burst=True),
            }
        )
    )


@contextmanager
def _postgres_database() -> Iterator[str]:
    import psycopg
    from psycopg import sql

    name = f"bench_brokers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**POSTGRES, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield "postgres://{user}@{host}:{port}/".format(**POSTGRES) + name
    finally:
        with psycopg.connect(**POSTGRES, dbname="postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


def _drop_redis_keys(cluster_name: str) -> None:
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"django_q:{cluster_name}:*"))
        if keys:
            client.delete(*keys)


@contextmanager
def _qcluster(env: dict[str, str], log: Path) -> Iterator[None]:
    """A qcluster stopped by SIGTERM to its main process only (DESIGN section 8)."""
    with log.open("wb") as sink:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)


def run_configuration(extra_env: dict[str, str], tasks: int) -> dict[str, list[float]]:
    """Migrate, start a cluster, time `tasks` tasks each way; latencies in s."""
    with tempfile.TemporaryDirectory(prefix="bench-brokers-") as folder:
        cluster_name = f"bench-{uuid.uuid4().hex[:12]}"
        inherited = {k: v for k, v in os.environ.items() if k not in SCALEOUT_VARS}
        env = {
            **inherited,
            "DJANGO_SETTINGS_MODULE": "studio.settings",
            "STUDIO_DATA_DIR": folder,
            "STUDIO_CLUSTER_NAME": cluster_name,
            "STUDIO_SYNC_TASKS": "false",
            **extra_env,
        }
        migrate = [sys.executable, "manage.py", "migrate", "--noinput"]
        subprocess.run(migrate, cwd=REPO, env=env, check=True, capture_output=True)
        enqueue = [sys.executable, "-m", "benchmarks.brokers", "--enqueuer"]
        try:
            with _qcluster(env, Path(folder, "qcluster.log")):
                enqueuer = subprocess.run(
                    [*enqueue, "--tasks", str(tasks)],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
        finally:
            if "STUDIO_REDIS_URL" in extra_env:
                _drop_redis_keys(cluster_name)
        if enqueuer.returncode != 0:
            raise SystemExit(f"enqueuer failed:\n{enqueuer.stderr}")
        return json.loads(enqueuer.stdout.splitlines()[-1])


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _row(name: str, mode: str, seconds: list[float]) -> str:
    ms = [1000 * s for s in seconds]
    return (
        f"{name:<16} {mode:<14} {len(ms):>5} {statistics.median(ms):>9.1f}"
        f" {_percentile(ms, 95):>9.1f} {min(ms):>9.1f} {max(ms):>9.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50, help="tasks per mode")
    parser.add_argument("--enqueuer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.enqueuer:
        _enqueuer_main(args.tasks)
        return 0

    print(
        f"{'configuration':<16} {'mode':<14} {'tasks':>5} {'median ms':>9}"
        f" {'p95 ms':>9} {'min ms':>9} {'max ms':>9}"
    )
    with _postgres_database() as orm_pg, _postgres_database() as redis_pg:
        configurations = {
            "orm + sqlite": {},
            "orm + postgres": {"DATABASE_URL": orm_pg},
            "redis + postgres": {
                "DATABASE_URL": redis_pg,
                "STUDIO_REDIS_URL": REDIS_URL,
            },
        }
        for name, extra_env in configurations.items():
            for mode, seconds in run_configuration(extra_env, args.tasks).items():
                print(_row(name, mode, seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
