"""One job over two nodes: instance_count 2 on PostgreSQL + Redis; a node lost mid-job.

Two real `qcluster` nodes with their own node names share a throwaway
PostgreSQL database, one Redis queue and one datastore. The node-side
functions run inside `manage.py shell` (see test_postgres_redis.py).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import User
from psycopg import sql

from studio import tasks
from studio.models import (
    BatchEndpoint,
    Job,
    Membership,
    Node,
    Role,
    RunBatch,
    RunInstance,
    Workspace,
)
from studio.services.invoke import invoke
from tests.scaleout import test_postgres_redis
from tests.scaleout.test_postgres_redis import NODES, ended_jobs, manage, node
from tests.studio.test_jobs_support import deploy_script, wait_for

FILES = 12
NAMES = [f"file_{n:03d}.txt" for n in range(FILES)]


def seed_rendezvous() -> None:
    """Node side: endpoint `texts` whose every run() waits for both nodes' processes."""
    workspace = Workspace.objects.create(name="team")
    owner = User.objects.create_user("owner")
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    deploy_script(
        workspace, owner, "rendezvous.py", files=FILES, mini_batch_size=1,
        instance_count=2, max_concurrency_per_instance=1,
        environment_variables={
            "RENDEZVOUS_DIR": os.environ["SPREAD_TEST_PEERS"], "PEERS": "2"
        },
    )  # fmt: skip


def seed_slow() -> None:
    """Node side: endpoint `texts`, 0.5 s a file, one process on each of 2 nodes."""
    workspace = Workspace.objects.create(name="team")
    owner = User.objects.create_user("owner")
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    deploy_script(
        workspace, owner, "slow_until_fixed.py", files=FILES, mini_batch_size=1,
        instance_count=2, max_concurrency_per_instance=1, max_retries=3,
        environment_variables={"SLEEP_S": "0.5"},
    )  # fmt: skip


def invoke_one() -> None:
    """Node side: one job, `spread`."""
    endpoint = BatchEndpoint.objects.get(name="texts")
    owner = User.objects.get(username="owner")
    invoke(endpoint, owner, data_asset="texts:1", job_name="spread")


def report() -> None:
    """Node side: the job and the nodes that took part in its runs, as JSON."""
    job = Job.objects.values(
        "status", "error", "items_succeeded", "items_failed", "job_dir", "node"
    ).get(name="spread")
    instances = RunInstance.objects.filter(job_run__job__name="spread").values(
        "node", "number", "lost", "left_at"
    )
    print(json.dumps({"job": job, "instances": list(instances)}, default=str))


def on_node(function: str) -> str:
    """Call one of this module's node-side functions in `manage.py shell`."""
    return test_postgres_redis.on_node(function, __name__)


def column(connection: psycopg.Connection, model, field: str, **where) -> list:
    """`field` of `model`'s rows matching `where`, read from the shared database."""
    conditions = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier(name)) for name in where
    )
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.Identifier(field), sql.Identifier(model._meta.db_table), conditions
    )
    return [row[0] for row in connection.execute(query, list(where.values()))]


def alive_nodes(connection: psycopg.Connection) -> set[str]:
    query = sql.SQL("SELECT name FROM {} WHERE last_seen > now() - interval '3 s'")
    table = sql.Identifier(Node._meta.db_table)
    return {row[0] for row in connection.execute(query.format(table))}


def output_rows(job: dict) -> list[str]:
    lines = Path(job["job_dir"], "outputs/predictions.csv").read_text().splitlines()
    return [line.split(",")[0] for line in lines]


@pytest.fixture
def fast_beats(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nodes beat every second; a helper silent for 3 s is lost."""
    monkeypatch.setenv("STUDIO_NODE_HEARTBEAT_S", "1")
    monkeypatch.setenv("STUDIO_INSTANCE_STALE_S", "3")
    monkeypatch.setenv("SPREAD_TEST_PEERS", str(tmp_path / "peers"))


@contextmanager
def spread_job_running(
    deployment, tmp_path: Path, settings, seed: str
) -> Iterator[tuple[psycopg.Connection, dict[str, subprocess.Popen]]]:
    """Both nodes up and alive, job `spread` invoked on the `seed`ed endpoint.

    Yields the shared database and each node's qcluster; the nodes stop after.
    """
    manage("migrate", "--noinput")
    on_node(seed)
    with (
        ExitStack() as stack,
        psycopg.connect(deployment.database_url, autocommit=True) as db,
    ):
        clusters = {
            name: stack.enter_context(node(name, tmp_path, settings)) for name in NODES
        }
        wait_for(lambda: alive_nodes(db) == set(NODES), 60, "both nodes' heartbeats")
        on_node("invoke_one")
        yield db, clusters


def orchestrating_node(db: psycopg.Connection) -> tuple[str, str]:
    """(the node running job `spread`, the other one), once it started."""
    orchestrator = wait_for(
        lambda: "".join(column(db, Job, "node", name="spread", status="running")),
        60,
        "a node to start the job",
    )
    return orchestrator, ({"node-a", "node-b"} - {orchestrator}).pop()


def completed_once(db: psycopg.Connection) -> dict:
    """Wait for the job's end; it completed, each input's row once, in order."""
    wait_for(lambda: ended_jobs(db) == 1, 120, "the job to end")
    seen = json.loads(on_node("report").splitlines()[-1])
    job = seen["job"]
    assert (job["status"], job["error"]) == ("completed", "")
    assert (job["items_succeeded"], job["items_failed"]) == (FILES, 0)
    assert output_rows(job) == NAMES
    return seen


@pytest.mark.slow
def test_a_job_with_instance_count_2_scores_on_both_nodes(
    deployment, fast_beats, tmp_path, settings
):
    with spread_job_running(deployment, tmp_path, settings, "seed_rendezvous") as (
        db,
        _,
    ):
        seen = completed_once(db)

    job = seen["job"]
    logs = Path(job["job_dir"], "logs")
    assert {p.name for p in (logs / "sys/node").iterdir()} == set(NODES)
    assert {p.name for p in (logs / "user/stdout").iterdir()} == set(NODES)
    with open(logs / "sys/job_report/processed_mini-batches.csv") as report_file:
        rows = list(csv.DictReader(report_file))
    assert {row["node"] for row in rows} == set(NODES)
    assert sorted(int(row["mini_batch"]) for row in rows) == list(range(FILES))
    helper = ({"node-a", "node-b"} - {job["node"]}).pop()
    instances = [(i["number"], i["node"], i["lost"]) for i in seen["instances"]]
    assert instances == [(0, job["node"], False), (1, helper, False)]


@pytest.mark.slow
def test_a_helper_node_killed_mid_job_loses_only_its_mini_batches(
    deployment, fast_beats, tmp_path, settings
):
    with spread_job_running(deployment, tmp_path, settings, "seed_slow") as (
        db,
        clusters,
    ):
        orchestrator, helper = orchestrating_node(db)
        wait_for(
            lambda: column(db, RunBatch, "index", node=helper, state="running"),
            60,
            f"{helper} to be scoring a mini-batch",
        )
        # The whole node at once: qcluster, its workers and their scoring hosts.
        os.killpg(clusters[helper].pid, signal.SIGKILL)
        seen = completed_once(db)

    master = Path(seen["job"]["job_dir"], "logs/sys/master_role.txt").read_text()
    assert f"on {helper}/process000 lost: its node stopped reporting" in master
    instances = {i["node"]: i["lost"] for i in seen["instances"]}
    assert instances == {orchestrator: False, helper: True}


def recover() -> None:
    """Node side: the scheduled recovery, at once; the jobs it took back."""
    print(json.dumps(tasks.recover_stale_jobs()))


@pytest.mark.slow
def test_the_orchestrating_node_killed_mid_job_resumes_on_the_other(
    deployment, fast_beats, tmp_path, settings, monkeypatch
):
    monkeypatch.setenv("STUDIO_JOB_STALE_S", "3")
    with spread_job_running(deployment, tmp_path, settings, "seed_slow") as (
        db,
        clusters,
    ):
        orchestrator, survivor = orchestrating_node(db)
        wait_for(
            lambda: column(db, RunBatch, "index", node=survivor, state="succeeded"),
            60,
            f"{survivor} to have scored a mini-batch",
        )
        os.killpg(clusters[orchestrator].pid, signal.SIGKILL)
        # The job's heartbeat goes stale; the schedule (called here at once
        # rather than waited for) hands it to the node that is left.
        wait_for(
            lambda: json.loads(on_node("recover").splitlines()[-1]) == ["spread"],
            60,
            "the recovery to take the job back",
        )
        seen = completed_once(db)

    assert seen["job"]["node"] == survivor
    # The first run's helper on the surviving node left once the job moved
    # to its second run (see test_ledger for the rule).
    helper = next(i for i in seen["instances"] if i["node"] == survivor)
    assert helper["left_at"] is not None
