"""The Compute page and the node heartbeats that feed it."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.signals import post_spawn

from studio import nodes
from studio.models import JobRun, JobStatus, Node, RunBatch, RunInstance
from studio.tasks import run_job_task
from tests.studio.test_cluster import qcluster
from tests.studio.test_jobs_support import (
    file_database,  # noqa: F401
    make_endpoint,
    make_job,
    wait_for,
)


def make_node(name: str, seconds_ago: float = 0, **fields: object) -> Node:
    seen = timezone.now() - timedelta(seconds=seconds_ago)
    values = {"memory_used_mb": 900, "memory_total_mb": 2000, "cpu_pct": 37.0}
    return Node.objects.create(name=name, last_seen=seen, **{**values, **fields})


def compute_url(workspace: str = "team") -> str:
    return reverse("studio:compute", args=[workspace])


def test_beat_creates_then_updates_the_node_with_this_machines_numbers(db):
    nodes.beat("node-a")
    first = Node.objects.get()
    nodes.beat("node-a")
    node = Node.objects.get()

    assert node.name == "node-a" and node.cluster == "batch-studio"
    assert node.last_seen > first.last_seen
    assert node.pid == os.getpid() and node.workers >= 1
    assert 0 <= node.cpu_pct <= 100 and 0 < node.memory_pct <= 100
    assert 0 < node.memory_used_mb <= node.memory_total_mb
    assert node.version.startswith("Python 3.")


@pytest.mark.usefixtures("file_database")
def test_the_heartbeat_survives_database_errors_until_stopped(monkeypatch, caplog):
    real_beat, calls = nodes.beat, []

    def flaky_beat(name: str) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        real_beat(name)

    monkeypatch.setattr(nodes, "beat", flaky_beat)
    stop = threading.Event()
    thread = threading.Thread(target=nodes.run_heartbeat, args=("node-b", 0.01, stop))
    thread.start()
    wait_for(lambda: Node.objects.filter(name="node-b").exists(), what="a beat")
    stop.set()
    thread.join(timeout=5)

    assert not thread.is_alive()
    assert "node node-b: heartbeat failed" in caplog.text


def test_the_heartbeat_thread_starts_once_per_process(monkeypatch):
    started = []
    monkeypatch.setattr(nodes, "run_heartbeat", lambda *args: started.append(args))
    monkeypatch.setattr(nodes, "_started_in", None)

    assert nodes.start_heartbeat() is True
    assert nodes.start_heartbeat() is False
    # A forked worker inherits the flag, not the thread.
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert nodes.start_heartbeat() is True
    wait_for(lambda: len(started) == 2, what="both threads")
    assert all(args[0] == "node-a" for args in started)


def test_a_spawned_worker_starts_the_heartbeat_but_not_a_sync_task(monkeypatch):
    started = []
    monkeypatch.setattr(nodes, "start_heartbeat", lambda: started.append(1))

    post_spawn.send(sender="django_q", proc_name="Process-1")  # Conf.SYNC in tests
    assert started == []
    monkeypatch.setattr(Conf, "SYNC", False)
    post_spawn.send(sender="django_q", proc_name="Process-1")
    assert started == [1]


def test_claiming_a_job_records_the_node_it_runs_on(cast, monkeypatch):
    job = make_job(cast.workspace)
    monkeypatch.setattr("studio.services.jobs.execute_job", lambda job: None)

    run_job_task(job.pk)

    job.refresh_from_db()
    assert (job.status, job.node) == (JobStatus.RUNNING, "node-a")


@pytest.mark.parametrize("who", ["owner", "contributor", "reader"])
def test_any_member_sees_the_compute_page(cast, who):
    make_node("node-a")
    response = cast.client(who).get(compute_url())
    assert response.status_code == 200
    assert 'data-node="node-a"' in response.content.decode()


def test_it_hides_the_page_from_outsiders_and_anonymous_users(cast, client):
    assert cast.client("outsider").get(compute_url()).status_code == 404
    response = client.get(compute_url())
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_workspace_nav_links_to_compute(cast):
    page = cast.client("reader").get(reverse("studio:workspace", args=["team"]))
    assert f'href="{compute_url()}"' in page.content.decode()


def test_it_tells_how_to_start_a_worker_when_no_node_reported(cast):
    page = cast.client("reader").get(compute_url()).content.decode()
    assert "No worker node has reported yet" in page
    assert "manage.py qcluster" in page and "STUDIO_NODE_NAME" in page


def test_a_node_is_alive_within_three_heartbeats_and_stale_after(cast, settings):
    settings.STUDIO_NODE_HEARTBEAT_S = 10
    make_node("fresh", seconds_ago=25)
    make_node("gone", seconds_ago=31)

    page = cast.client("reader").get(compute_url()).content.decode()

    fresh, gone = page.split('data-node="fresh"')[1].split('data-node="gone"')
    assert "alive" in fresh and "stale" not in fresh
    assert "stale" in gone and "alive" not in gone
    assert "25 s ago" in fresh and "31 s ago" in gone
    assert "37 %" in fresh and "900 / 2000 MB" in fresh


def test_it_lists_the_workspaces_jobs_running_on_each_node(cast):
    make_node("node-a")
    make_node("node-b")
    endpoint = make_endpoint(cast.workspace)
    mine = make_job(cast.workspace, endpoint=endpoint, status="running", node="node-a")
    make_job(cast.workspace, endpoint=endpoint, status="completed", node="node-a")
    theirs = make_job(cast.other_workspace, status="running", node="node-a")

    page = cast.client("reader").get(compute_url()).content.decode()

    node_a, node_b = page.split('data-node="node-a"')[1].split('data-node="node-b"')
    detail = reverse("studio:job-detail", args=["team", mine.name])
    assert f'<a href="{detail}">{mine.name}</a>' in node_a
    assert page.count("/jobs/job-") == 1 and theirs.name not in page
    assert "job-" not in node_b


def cells(page: str, node: str) -> tuple[str, str]:
    """(scoring processes, mini-batches running) in `node`'s row."""
    row = page.split(f'data-node="{node}"')[1].split("</tr>")[0]
    processes = row.split('class="scoring-processes">')[1].split("<")[0]
    batches = row.split('class="mini-batches-running">')[1].split("<")[0]
    return processes, batches


def test_it_shows_scoring_processes_and_mini_batches_running_on_each_node(cast):
    for name in ("node-a", "node-b", "node-c"):
        make_node(name)
    endpoint = make_endpoint(cast.workspace)
    settings = {"instance_count": 2, "max_concurrency_per_instance": 3}
    # On one node: all 2 x 3 processes there, running mini-batches as reported.
    make_job(
        cast.workspace, endpoint=endpoint, status="running", node="node-c",
        settings=settings, mini_batches_running=5, runs=1,
    )  # fmt: skip
    # Spread over node-a (orchestrating) and node-b (helping): 3 processes each.
    spread = make_job(
        cast.workspace, endpoint=endpoint, status="running", node="node-a",
        settings=settings, runs=2,
    )  # fmt: skip
    job_run = JobRun.objects.create(job=spread, run=2, total=4, tries=3)
    now = timezone.now()
    for number, name in enumerate(("node-a", "node-b")):
        RunInstance.objects.create(
            job_run=job_run, node=name, number=number, heartbeat_at=now
        )
    for index, name in enumerate(("node-a", "node-b", "node-b", "")):
        RunBatch.objects.create(
            job_run=job_run, index=index, item_count=1, node=name,
            state="running" if name else "pending",
        )  # fmt: skip

    page = cast.client("reader").get(compute_url()).content.decode()

    assert cells(page, "node-a") == ("3", "1")
    assert cells(page, "node-b") == ("3", "2")
    assert cells(page, "node-c") == ("6", "5")
    node_b = page.split('data-node="node-b"')[1].split("</tr>")[0]
    assert spread.name in node_b


def test_the_page_queries_do_not_grow_with_nodes_and_jobs(cast):
    client = cast.client("reader")
    endpoint = make_endpoint(cast.workspace)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(compute_url()).status_code == 200
        return len(captured)

    make_node("node-0")
    make_job(cast.workspace, endpoint=endpoint, status="running", node="node-0")
    few = queries()
    for number in range(1, 5):
        make_node(f"node-{number}")
        for _ in range(3):
            make_job(
                cast.workspace,
                endpoint=endpoint,
                status="running",
                node=f"node-{number}",
            )
    assert queries() == few <= 6


@pytest.mark.slow
@pytest.mark.usefixtures("file_database")
def test_a_real_cluster_reports_its_node(tmp_path, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    started = timezone.now()

    with qcluster(tmp_path, tmp_path / "qcluster.log") as cluster:
        node = wait_for(
            lambda: Node.objects.filter(name="node-a", last_seen__gte=started).first(),
            timeout=60,
            what="node-a's heartbeat",
        )

    assert cluster.returncode == 0
    assert node.workers == 2 and node.pid != os.getpid()
    assert node.memory_total_mb > 0
