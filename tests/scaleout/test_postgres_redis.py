"""Scale-out mode: settings from the environment; two nodes on PostgreSQL + Redis.

Settings are read at import, so each configuration is looked at in a fresh
interpreter. The two-node test runs the studio as real nodes would: every
`manage.py` is a subprocess configured by environment variables (see
conftest.py), sharing a throwaway PostgreSQL database, one Redis queue and
one datastore folder.

`seed`, `invoke_jobs` and `report` run on the node side, inside
`manage.py shell`; this process reads only the shared database and folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import User
from django_q.models import Failure, Success
from psycopg import sql

from studio.models import BatchEndpoint, Job, JobStatus, Membership, Role, Workspace
from studio.services.invoke import invoke
from tests.conftest import REPO
from tests.studio.test_cluster import qcluster
from tests.studio.test_jobs_support import deploy_script, wait_for

JOBS, FILES = 4, 6
NODES = ("node-a", "node-b")
# Variables a CI environment might set that would change what "unset" means.
SCALEOUT_VARIABLES = ("DATABASE_URL", "STUDIO_REDIS_URL", "STUDIO_CLUSTER_NAME")
SHOW_SETTINGS = (
    "import json; from django.conf import settings; print(json.dumps("
    "{'database': settings.DATABASES['default'], 'q_cluster': settings.Q_CLUSTER},"
    " default=str))"
)


def load_settings(**environ: str) -> subprocess.CompletedProcess:
    """studio.settings imported in a fresh interpreter with `environ` set."""
    env = {k: v for k, v in os.environ.items() if k not in SCALEOUT_VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="studio.settings", **environ)
    return subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_seen(**environ: str) -> dict:
    loaded = load_settings(**environ)
    assert loaded.returncode == 0, loaded.stderr
    return json.loads(loaded.stdout)


def test_it_reads_postgres_and_redis_from_the_environment():
    seen = settings_seen(
        DATABASE_URL="postgres://batch:s%40cret@db.internal:6543/studio?sslmode=require",
        STUDIO_REDIS_URL="redis://queue.internal:6380/2",
        STUDIO_CLUSTER_NAME="prod",
    )

    assert seen["database"] == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "studio",
        "USER": "batch",
        "PASSWORD": "s@cret",
        "HOST": "db.internal",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }
    q_cluster = seen["q_cluster"]
    assert q_cluster["redis"] == "redis://queue.internal:6380/2"
    assert "orm" not in q_cluster
    assert q_cluster["name"] == "prod"
    assert q_cluster["queue_limit"] == 1
    assert q_cluster["retry"] > q_cluster["timeout"]


def test_it_accepts_postgresql_urls_without_user_or_port():
    seen = settings_seen(DATABASE_URL="postgresql://localhost/studio")

    database = seen["database"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["HOST"], database["PORT"]) == (
        "studio",
        "localhost",
        "",
    )
    assert (database["USER"], database["PASSWORD"]) == ("", "")
    assert seen["q_cluster"]["orm"] == "default"


def test_it_keeps_sqlite_and_the_orm_broker_without_environment():
    seen = settings_seen()

    assert seen["database"]["ENGINE"] == "django.db.backends.sqlite3"
    assert seen["database"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert seen["q_cluster"]["orm"] == "default"
    assert "redis" not in seen["q_cluster"]
    assert seen["q_cluster"]["name"] == "batch-studio"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://admin:hunter2@db/studio",
        "postgres://admin:hunter2@db:99999/studio",
        "postgres://admin:hunter2@db/",
    ],
)
def test_it_refuses_a_database_url_it_cannot_use_without_showing_it(url):
    loaded = load_settings(DATABASE_URL=url)

    assert loaded.returncode != 0
    assert "DATABASE_URL must look like postgres://" in loaded.stderr
    assert "hunter2" not in loaded.stderr


def test_it_refuses_a_redis_url_it_cannot_use():
    loaded = load_settings(STUDIO_REDIS_URL="queue.internal:6379")

    assert loaded.returncode != 0
    assert "STUDIO_REDIS_URL must look like redis://" in loaded.stderr


def manage(*args: str, timeout: float = 180) -> str:
    """`manage.py <args>` in this process's environment; what it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stderr}"
    return done.stdout


def on_node(function: str, module: str = __name__) -> str:
    """Call a node-side function of `module` (this one) in `manage.py shell`."""
    return manage("shell", "-c", f"from {module} import {function}; {function}()")


def seed() -> None:
    """Node side: workspace `team`, its owner, and endpoint `texts` on ok.py."""
    workspace = Workspace.objects.create(name="team")
    owner = User.objects.create_user("owner")
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    deploy_script(workspace, owner, "ok.py", files=FILES, mini_batch_size=2)


def invoke_jobs() -> None:
    """Node side: JOBS invocations at once; each enqueues when it commits."""
    endpoint = BatchEndpoint.objects.get(name="texts")
    owner = User.objects.get(username="owner")
    for number in range(JOBS):
        invoke(endpoint, owner, data_asset="texts:1", job_name=f"scaleout-{number}")


def report() -> None:
    """Node side: the jobs and django-q's task results, as JSON."""
    jobs = Job.objects.order_by("name").values(
        "name", "status", "error", "items_succeeded", "job_dir"
    )
    tasks = {"func": "studio.tasks.run_job_task"}
    print(
        json.dumps(
            {
                "jobs": list(jobs),
                "successes": Success.objects.filter(**tasks).count(),
                "failures": Failure.objects.filter(**tasks).count(),
            }
        )
    )


@contextmanager
def node(name: str, tmp_path: Path, settings) -> Iterator[subprocess.Popen]:
    """A `manage.py qcluster` node named `name` (test_cluster's, SIGTERM-stopped)."""
    settings.STUDIO_NODE_NAME = name
    with qcluster(tmp_path / name, tmp_path / f"{name}.log") as cluster:
        yield cluster


def pulling(log: Path) -> bool:
    """Whether a node's pusher has started taking tasks off the queue."""
    return log.exists() and "pushing tasks at" in log.read_text()


def ended_jobs(connection: psycopg.Connection) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE status = ANY(%s)").format(
        sql.Identifier(Job._meta.db_table)
    )
    terminal = [status.value for status in JobStatus.TERMINAL]
    return connection.execute(query, [terminal]).fetchone()[0]


def nodes_that_ran(job_dir: Path) -> set[str]:
    return {path.name for path in (job_dir / "logs/sys/node").iterdir()}


@pytest.mark.slow
def test_two_nodes_share_one_queue_on_postgres_and_redis(
    deployment, tmp_path, settings
):
    manage("migrate", "--noinput")
    on_node("seed")

    with ExitStack() as stack:
        clusters = [stack.enter_context(node(n, tmp_path, settings)) for n in NODES]
        wait_for(
            lambda: all(pulling(tmp_path / f"{n}.log") for n in NODES),
            timeout=60,
            what="both nodes to pull from the Redis queue",
        )
        on_node("invoke_jobs")
        with psycopg.connect(deployment.database_url, autocommit=True) as conn:
            wait_for(
                lambda: ended_jobs(conn) == JOBS,
                timeout=180,
                what=f"{JOBS} jobs to end",
            )

    assert [cluster.returncode for cluster in clusters] == [0, 0]
    seen = json.loads(on_node("report").splitlines()[-1])
    jobs = seen["jobs"]
    assert [job["status"] for job in jobs] == [JobStatus.COMPLETED] * JOBS, jobs
    assert [job["items_succeeded"] for job in jobs] == [FILES] * JOBS
    for job in jobs:
        output = Path(job["job_dir"], "outputs/predictions.csv").read_text()
        assert len(output.splitlines()) == FILES, job["name"]
    # Each job ran once: one successful task each, and one node's logs.
    assert (seen["successes"], seen["failures"]) == (JOBS, 0)
    ran_on = [nodes_that_ran(Path(job["job_dir"])) for job in jobs]
    assert all(len(nodes) == 1 for nodes in ran_on), ran_on
    assert set().union(*ran_on) == set(NODES), ran_on
