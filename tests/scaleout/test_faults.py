"""Faults a PostgreSQL + Redis deployment survives mid-job (issue #6), for real.

Redis restarted, with a queued job's task in it and under a running job; a
node's cluster restarted under a running job; the web process restarted
while a job runs. In each the job ends completed, each input's row once in
its output, with the right counts.

The Redis tests use a private `redis-server` the test owns (no persistence,
as a default install), so killing it disturbs nothing else. As in
test_postgres_redis.py the studio runs only in subprocesses: node-side
functions here run in `manage.py shell`, and this process reads the shared
database with psycopg and the job folder from the disk.
"""

from __future__ import annotations

import csv
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from django.contrib.auth.models import User
from psycopg.rows import dict_row

from studio import tasks
from studio.models import BatchEndpoint, Job, JobStatus, Membership, Role, Workspace
from studio.services.invoke import invoke
from tests.conftest import REPO
from tests.scaleout.test_postgres_redis import manage, node, pulling
from tests.studio.test_cluster import descendants
from tests.studio.test_jobs_support import deploy_script, wait_for

# 30 mini-batches of one file, 0.3 s each, two at a time: about 5 s of scoring.
FILES = 30
NAMES = [f"file_{n:03d}.txt" for n in range(FILES)]
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A `redis-server` on a free loopback port, started and killed by the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it empty, on the same port each time; it never saves to disk."""
        command = [
            shutil.which("redis-server"), "--port", str(self.port),
            "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.answers, timeout=10, what="redis-server to answer PING")

    def kill(self) -> None:
        """SIGKILL: whatever its queue held is gone."""
        self.process.kill()
        self.process.wait()

    def answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_timeout=1) as client:
                return client.ping()
        except redis.ConnectionError:
            return False

    def waiting_tasks(self, cluster_name: str) -> int:
        """Tasks in the cluster's queue (django-q's Redis broker list)."""
        with redis.Redis(port=self.port, socket_timeout=1) as client:
            return client.llen(f"django_q:{cluster_name}:q")


@pytest.fixture
def private_redis(
    deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisServer]:
    """The deployment's broker is a Redis of this test's own."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed; `.ci/run` installs it")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    monkeypatch.setenv("STUDIO_REDIS_URL", server.url)
    deployment.redis_url = server.url
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.kill()


# Node side: each runs in `manage.py shell` on the deployment's settings.


def on_node(function: str, *args: object) -> str:
    """Call this module's node-side `function(*args)` in `manage.py shell`."""
    call = f"{function}({', '.join(map(repr, args))})"
    return manage("shell", "-c", f"from {__name__} import {function}; {call}")


def seed() -> None:
    """Workspace `team`, its owner, endpoint `texts` on a slow script."""
    workspace = Workspace.objects.create(name="team")
    owner = User.objects.create_user("owner", password=PASSWORD)
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    deploy_script(
        workspace, owner, "slow_until_fixed.py", files=FILES, mini_batch_size=1,
        max_concurrency_per_instance=2, environment_variables={"SLEEP_S": "0.3"},
    )  # fmt: skip


def invoke_job(name: str) -> None:
    """Invoke `texts` on its data as job `name`; it is enqueued as it commits."""
    endpoint = BatchEndpoint.objects.get(name="texts")
    owner = User.objects.get(username="owner")
    invoke(endpoint, owner, data_asset="texts:1", job_name=name)


def recover(stale_s: float) -> None:
    """The scheduled recovery task, with a short stale threshold; what it did."""
    print(json.dumps(tasks.recover_stale_jobs(stale_s)))


def recovered(stale_s: float = 1) -> list[str]:
    return json.loads(on_node("recover", stale_s).splitlines()[-1])


# This side: the shared database and job folders.


def job_row(db: psycopg.Connection, name: str) -> dict:
    query = f"SELECT * FROM {Job._meta.db_table} WHERE name = %s"
    with db.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query, [name]).fetchone()


def ended(db: psycopg.Connection, name: str) -> dict | None:
    row = job_row(db, name)
    return row if row["status"] in JobStatus.TERMINAL else None


def scored(db: psycopg.Connection, name: str, at_least: int) -> bool:
    """Whether the job reported `at_least` mini-batches succeeded (and runs)."""
    row = job_row(db, name)
    return row["status"] == JobStatus.RUNNING and (
        row["mini_batches_succeeded"] >= at_least
    )


def committed(row: dict) -> int:
    """Mini-batches the job folder's checkpoint holds as final in the output."""
    text = Path(row["job_dir"], ".state/checkpoint.json").read_text()
    return json.loads(text)["next_index"]


def processed(row: dict) -> Counter:
    """How often each mini-batch was scored, from processed_mini-batches.csv."""
    path = Path(row["job_dir"], "logs/sys/job_report/processed_mini-batches.csv")
    with path.open(newline="") as handle:
        return Counter(int(line["mini_batch"]) for line in csv.DictReader(handle))


def assert_completed_once(row: dict, runs: int = 1) -> None:
    """Completed with right counts; each input's row once, in input order."""
    assert row["status"] == JobStatus.COMPLETED, row["error"]
    assert (row["runs"], row["error"], row["mini_batches_total"]) == (runs, "", FILES)
    assert (row["mini_batches_succeeded"], row["mini_batches_failed"]) == (FILES, 0)
    assert (row["items_succeeded"], row["items_failed"]) == (FILES, 0)
    output = Path(row["job_dir"], "outputs/predictions.csv").read_text()
    assert output.splitlines() == NAMES
    assert set(processed(row)) == set(range(FILES))


@pytest.mark.slow
def test_jobs_survive_redis_restarted_with_their_task_and_under_their_run(
    deployment, private_redis, tmp_path, settings
):
    manage("migrate", "--noinput")
    on_node("seed")
    # No node runs yet: the task waits in Redis, which then restarts empty.
    on_node("invoke_job", "task-lost")
    assert private_redis.waiting_tasks(deployment.cluster_name) == 1
    private_redis.kill()
    private_redis.start()
    assert private_redis.waiting_tasks(deployment.cluster_name) == 0
    log = tmp_path / "node-a.log"

    with (
        node("node-a", tmp_path, settings) as cluster,
        psycopg.connect(deployment.database_url, autocommit=True) as db,
    ):
        wait_for(lambda: pulling(log), timeout=60, what="the node to pull tasks")
        on_node("invoke_job", "redis-mid-run")
        wait_for(lambda: scored(db, "redis-mid-run", 4), what="some mini-batches")
        private_redis.kill()
        # django-q's pusher logs it, sleeps 10 s and exits; the cluster's
        # guard then starts a new pusher. The worker running the job and the
        # cluster itself carry on.
        wait_for(
            lambda: "Failed to pull task from broker" in log.read_text(),
            what="the node to notice Redis went away",
        )
        # Invoking while the queue is down still creates the job, queued.
        on_node("invoke_job", "invoked-while-down")
        assert job_row(db, "invoked-while-down")["status"] == JobStatus.QUEUED
        private_redis.start()
        assert job_row(db, "redis-mid-run")["status"] == JobStatus.RUNNING
        mid_run = wait_for(
            lambda: ended(db, "redis-mid-run"), timeout=60, what="the job to end"
        )
        # Jobs whose task was lost, or never sent, are never run by themselves ...
        for name in ("task-lost", "invoked-while-down"):
            assert job_row(db, name)["status"] == JobStatus.QUEUED
        # ... until the scheduled recovery enqueues them again.
        assert sorted(recovered()) == ["invoked-while-down", "task-lost"]
        lost = wait_for(lambda: ended(db, "task-lost"), 60, "task-lost to end")
        never_sent = wait_for(
            lambda: ended(db, "invoked-while-down"), 60, "invoked-while-down to end"
        )
        assert cluster.poll() is None, "the node's cluster kept running"

    assert_completed_once(mid_run)
    assert_completed_once(lost)
    assert_completed_once(never_sent)
    assert "reincarnated pusher" in log.read_text()


@pytest.mark.slow
def test_sigterm_to_a_node_lets_its_running_job_finish_before_it_stops(
    deployment, tmp_path, settings
):
    manage("migrate", "--noinput")
    on_node("seed")
    log = tmp_path / "node-a.log"

    with (
        node("node-a", tmp_path, settings) as cluster,
        psycopg.connect(deployment.database_url, autocommit=True) as db,
    ):
        wait_for(lambda: pulling(log), timeout=60, what="the node to pull tasks")
        on_node("invoke_job", "graceful")
        wait_for(lambda: scored(db, "graceful", 4), what="some mini-batches")
        cluster.send_signal(signal.SIGTERM)  # the main process only (DESIGN 8)
        at_sigterm = job_row(db, "graceful")["mini_batches_succeeded"]
        # The stopping cluster takes no new task but its worker goes on.
        wait_for(
            lambda: job_row(db, "graceful")["mini_batches_succeeded"] >= at_sigterm + 4,
            what="the job to go on scoring after SIGTERM",
        )
        assert cluster.poll() is None
        cluster.wait(timeout=60)
        row = job_row(db, "graceful")

    assert cluster.returncode == 0, log.read_text()
    assert_completed_once(row)  # run whole, once, by the stopping node
    assert sum(processed(row).values()) == FILES


@pytest.mark.slow
def test_a_job_resumes_on_a_new_node_after_its_node_was_restarted(
    deployment, tmp_path, settings
):
    """SIGTERM, then SIGKILL once the stop grace is over, as a supervisor does."""
    manage("migrate", "--noinput")
    on_node("seed")
    seen: dict[int, tuple[int, str]] = {}
    try:
        with psycopg.connect(deployment.database_url, autocommit=True) as db:
            with node("node-a", tmp_path, settings) as first:
                wait_for(
                    lambda: pulling(tmp_path / "node-a.log"),
                    timeout=60,
                    what="node-a to pull tasks",
                )
                on_node("invoke_job", "restarted")

                def scored_some() -> bool:
                    seen.update(descendants(first.pid))
                    return scored(db, "restarted", 4)

                wait_for(scored_some, what="some mini-batches")
                first.send_signal(signal.SIGTERM)
                wait_for(lambda: scored(db, "restarted", 8), what="more mini-batches")
                seen.update(descendants(first.pid))
                os.killpg(first.pid, signal.SIGKILL)  # the grace is over
                first.wait()
            kill_leftovers(seen)
            before = job_row(db, "restarted")
            kept = committed(before)
            assert before["status"] == JobStatus.RUNNING
            assert 4 <= kept < FILES
            scored_before = processed(before)

            with node("node-b", tmp_path, settings):
                wait_for(recovered, timeout=30, what="the recovery to take it back")
                row = wait_for(
                    lambda: ended(db, "restarted"), timeout=60, what="the job to end"
                )
    finally:
        kill_leftovers(seen)

    assert_completed_once(row, runs=2)
    scored_after = processed(row)
    assert all(scored_after[i] == scored_before[i] for i in range(kept)), (
        "committed mini-batches ran again"
    )
    assert row["node"] == "node-b"


def kill_leftovers(pids: dict[int, tuple[int, str]]) -> None:
    """Scoring processes of a killed cluster die with it; make sure of it."""
    for pid, (_, command) in pids.items():
        try:
            process = psutil.Process(pid)
            if " ".join(process.cmdline()) == command:  # not a reused id
                process.kill()
        except psutil.NoSuchProcess:
            continue


@contextmanager
def web_server(port: int, log: Path) -> Iterator[subprocess.Popen]:
    """The studio's web process, as `manage.py serve` starts it; SIGTERM-stopped."""
    with log.open("ab") as sink:
        server = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "runserver",
                "--noreload",
                f"127.0.0.1:{port}",
            ],
            cwd=REPO,
            env={**os.environ, "STUDIO_DATA_DIR": str(log.parent / "web")},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: answers(port), timeout=30, what="the web process to answer")
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2).close()
    except OSError:
        return False
    return True


class Browser:
    """A signed-in session against the web process on `port`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def open(self, path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        """GET (or POST `form` to) `path`, following redirects; (final URL, body)."""
        url = f"http://127.0.0.1:{self.port}{path}"
        data = urllib.parse.urlencode(form).encode() if form else None
        with self.opener.open(url, data, timeout=10) as response:
            return response.url, response.read().decode()

    def get(self, path: str) -> str:
        url, body = self.open(path)
        assert "/login/" not in url, f"{path} asked to sign in"
        return body

    def sign_in(self, username: str, password: str) -> None:
        _, page = self.open("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
        url, _ = self.open(
            "/login/",
            {"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        assert "/login/" not in url, "signing in failed"

    def status(self, job: str) -> dict:
        """The JSON the job page polls for its live progress."""
        return json.loads(self.get(f"/w/team/jobs/{job}/status/"))

    def ended(self, job: str) -> dict | None:
        status = self.status(job)
        return status if status["terminal"] else None


@pytest.mark.slow
def test_the_web_process_restarted_while_a_job_runs_shows_it_completing(
    deployment, tmp_path, settings
):
    manage("migrate", "--noinput")
    on_node("seed")
    port = free_port()
    browser = Browser(port)

    with (
        node("node-a", tmp_path, settings),
        psycopg.connect(deployment.database_url, autocommit=True) as db,
    ):
        with web_server(port, tmp_path / "web-1.log"):
            browser.sign_in("owner", PASSWORD)
            on_node("invoke_job", "web-restart")
            wait_for(
                lambda: browser.status("web-restart")["counts"]["mini_batches_done"],
                what="the job page to show progress",
            )
        assert job_row(db, "web-restart")["status"] == JobStatus.RUNNING

        with web_server(port, tmp_path / "web-2.log"):
            # Sessions live in the database: still signed in.
            status = wait_for(
                lambda: browser.ended("web-restart"),
                timeout=60,
                what="the job page to show the job ended",
            )
            page = browser.get("/w/team/jobs/web-restart/")
        row = job_row(db, "web-restart")

    assert (status["status"], status["percent"], status["error"]) == (
        JobStatus.COMPLETED,
        100,
        "",
    )
    assert status["counts"] == {
        "mini_batches_total": FILES,
        "mini_batches_done": FILES,
        "mini_batches_succeeded": FILES,
        "mini_batches_failed": 0,
        "items_succeeded": FILES,
        "items_failed": 0,
    }
    for count in ("mini_batches_succeeded", "mini_batches_total", "items_succeeded"):
        assert f'data-count="{count}">{FILES}<' in page, count
    assert_completed_once(row)
