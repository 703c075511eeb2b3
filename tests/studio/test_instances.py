"""A job spread over nodes: which nodes are asked to help, and a helper's delivery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from studio import tasks
from studio.ledger import DatabaseLedger
from studio.models import (
    BatchDeployment,
    Job,
    JobRun,
    JobStatus,
    Node,
    RunInstance,
    Workspace,
)
from studio.services.instances import HELPER_TASK, MAX_REDELIVERIES, shared_ledger
from studio.services.invoke import invoke
from studio.services.jobs import job_spec
from tests.studio.test_cluster import qcluster
from tests.studio.test_jobs_support import (  # noqa: F401 - fixture
    deploy_script,
    file_database,
    make_job,
    wait_for,
)

NO_FREE_NODE = (
    "Helper 1 found no node free to take part; the job goes on with fewer nodes"
)
DRIVER_LOG = "azureml-logs/70_driver_log.txt"


def spread_job(workspace: Workspace, job_dir: Path, instance_count: int = 2) -> Job:
    """A job row node-a claimed once (run 1), its deployment asking for nodes."""
    job = make_job(
        workspace, status=JobStatus.RUNNING, runs=1, node="node-a", job_dir=job_dir
    )
    BatchDeployment.objects.filter(pk=job.deployment_id).update(
        settings={"instance_count": instance_count}
    )
    return Job.objects.get(pk=job.pk)


def node_seen(name: str, seconds_ago: float = 0, cluster: str | None = None) -> Node:
    """A node of this cluster (or `cluster`) that beat `seconds_ago`."""
    return Node.objects.create(
        name=name,
        last_seen=timezone.now() - timedelta(seconds=seconds_ago),
        cluster=settings.Q_CLUSTER["name"] if cluster is None else cluster,
    )


def helper_tasks() -> list[tuple[Any, ...]]:
    """The arguments of the helper tasks waiting in the ORM broker's queue."""
    return sorted(
        tuple(task.task["args"])
        for task in OrmQ.objects.all()
        if task.task["func"] == HELPER_TASK
    )


def deliver(node: str, settings: Any) -> tuple[Any, ...]:
    """Take the one waiting helper task off the queue and run it on `node`."""
    [args] = helper_tasks()
    OrmQ.objects.all().delete()
    settings.STUDIO_NODE_NAME = node
    tasks.run_instance_task(*args)
    return args


def taking_part(job: Job) -> list[tuple[int, str]]:
    return list(
        RunInstance.objects.filter(job_run__job=job).values_list("number", "node")
    )


def orchestrate(job: Job) -> DatabaseLedger:
    """node-a's ledger for the job's run 1 with three mini-batches, helpers unasked."""
    ledger = DatabaseLedger.open(job, "node-a", [1, 1, 1], 2)
    ledger.restore(0, 0, (0, 0))
    return ledger


@pytest.fixture
def enqueue_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks wait in the ORM broker's queue instead of running inline."""
    monkeypatch.setattr(Conf, "SYNC", False)


def test_a_job_with_instance_count_1_runs_alone(cast, tmp_path):
    job = spread_job(cast.workspace, tmp_path / "job", instance_count=1)
    node_seen("node-b")

    assert shared_ledger(job, job_spec(job, "node-a")) is None


def test_a_job_runs_alone_when_no_other_node_is_alive(cast, tmp_path):
    job = spread_job(cast.workspace, tmp_path / "job", instance_count=2)
    node_seen("node-a")
    node_seen("node-b", seconds_ago=3600)

    assert shared_ledger(job, job_spec(job, "node-a")) is None


def test_nodes_of_another_cluster_do_not_help(cast, tmp_path):
    job = spread_job(cast.workspace, tmp_path / "job", instance_count=2)
    node_seen("node-a")
    node_seen("node-b", cluster="another-queue")

    assert shared_ledger(job, job_spec(job, "node-a")) is None


@pytest.mark.usefixtures("enqueue_only")
def test_one_helper_per_other_live_node_is_asked_once_the_ledger_is_ready(
    cast, tmp_path
):
    job = spread_job(cast.workspace, tmp_path / "job", instance_count=3)
    for name in ("node-a", "node-b", "node-c", "node-d"):
        node_seen(name)
    node_seen("node-e", seconds_ago=3600)

    open_ledger = shared_ledger(job, job_spec(job, "node-a"))
    ledger = open_ledger([2, 2, 1], 2)
    assert helper_tasks() == [], "not before its mini-batches are written"
    ledger.restore(0, 0, (0, 0))

    # instance_count 3: two helpers, though three other nodes are alive.
    assert helper_tasks() == [(job.pk, 1, 1), (job.pk, 1, 2)]
    assert taking_part(job) == [(0, "node-a")]
    assert ledger.progress().total == 3


def _stop_run(job: Job) -> int:
    orchestrate(job).stop()
    return 1


def _end_job(job: Job) -> int:
    orchestrate(job)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELED)
    return 1


def _earlier_run(job: Job) -> int:
    orchestrate(job)
    return 0


def _later_run(job: Job) -> int:
    orchestrate(job)
    return 2


def _take_number(job: Job) -> int:
    DatabaseLedger.join(orchestrate(job).job_run, "node-c", 1)
    return 1


@pytest.mark.usefixtures("enqueue_only")
@pytest.mark.parametrize(
    "situation",
    [_stop_run, _end_job, _earlier_run, _later_run, _take_number],
    ids=["run stopped", "job ended", "earlier run", "later run", "number taken"],
)
def test_a_helper_delivery_that_is_not_wanted_does_nothing(
    cast, tmp_path, settings, situation: Callable[[Job], int]
):
    job = spread_job(cast.workspace, tmp_path / "job")
    node_seen("node-b")
    node_seen("node-c")
    run = situation(job)
    before = taking_part(job)
    settings.STUDIO_NODE_NAME = "node-b"

    tasks.run_instance_task(job.pk, run, 1)

    assert taking_part(job) == before
    assert "node-b" not in dict(before).values()
    assert helper_tasks() == []
    assert not (tmp_path / "job" / DRIVER_LOG).exists()


@pytest.mark.usefixtures("enqueue_only")
def test_a_helper_delivered_to_a_node_taking_part_goes_back_on_the_queue(
    cast, tmp_path, settings
):
    job = spread_job(cast.workspace, tmp_path / "job")
    node_seen("node-a")
    node_seen("node-b")
    shared_ledger(job, job_spec(job, "node-a"))([1, 1], 2).restore(0, 0, (0, 0))

    delivered = deliver("node-a", settings)

    assert delivered == (job.pk, 1, 1)
    assert helper_tasks() == [(job.pk, 1, 1, 1)]
    assert taking_part(job) == [(0, "node-a")]
    assert not (tmp_path / "job" / DRIVER_LOG).exists()


@pytest.mark.usefixtures("enqueue_only")
def test_a_second_helper_delivered_to_a_node_already_helping_goes_back_on_the_queue(
    cast, tmp_path, settings
):
    job = spread_job(cast.workspace, tmp_path / "job", instance_count=3)
    for name in ("node-a", "node-b", "node-c"):
        node_seen(name)
    DatabaseLedger.join(orchestrate(job).job_run, "node-b", 1)
    settings.STUDIO_NODE_NAME = "node-b"

    tasks.run_instance_task(job.pk, 1, 2)
    tasks.run_instance_task(job.pk, 1, 1)  # delivered twice: nothing to do

    assert helper_tasks() == [(job.pk, 1, 2, 1)]
    assert taking_part(job) == [(0, "node-a"), (1, "node-b")]


@pytest.mark.usefixtures("enqueue_only")
def test_a_helper_that_keeps_landing_on_a_node_taking_part_gives_up(
    cast, tmp_path, settings
):
    job = spread_job(cast.workspace, tmp_path / "job")
    node_seen("node-a")
    node_seen("node-b")
    shared_ledger(job, job_spec(job, "node-a"))([1, 1], 2).restore(0, 0, (0, 0))

    delivered = [deliver("node-a", settings) for _ in range(MAX_REDELIVERIES + 1)]

    assert [args[3:] for args in delivered] == [()] + [
        (number,) for number in range(1, MAX_REDELIVERIES + 1)
    ]
    assert helper_tasks() == []
    assert taking_part(job) == [(0, "node-a")]
    assert NO_FREE_NODE in (tmp_path / "job" / DRIVER_LOG).read_text()


@pytest.mark.usefixtures("enqueue_only")
def test_a_helper_gives_up_at_once_when_no_other_node_is_alive(
    cast, tmp_path, settings
):
    job = spread_job(cast.workspace, tmp_path / "job")
    node_seen("node-a")
    node_seen("node-b")
    shared_ledger(job, job_spec(job, "node-a"))([1, 1], 2).restore(0, 0, (0, 0))
    Node.objects.filter(name="node-b").update(
        last_seen=timezone.now() - timedelta(hours=1)
    )

    deliver("node-a", settings)

    assert helper_tasks() == []
    assert NO_FREE_NODE in (tmp_path / "job" / DRIVER_LOG).read_text()
    assert JobRun.objects.get(job=job).instances.count() == 1


# The real thing: two `manage.py qcluster` nodes on the default deployment.

NODES = ("node-a", "node-b")
FILES = 6
NAMES = [f"file_{n:03d}.txt" for n in range(FILES)]


@contextmanager
def node(name: str, tmp_path: Path, settings: Any) -> Iterator[Any]:
    """A qcluster node named `name` on the test's SQLite file (in tmp_path)."""
    settings.STUDIO_NODE_NAME = name
    with qcluster(tmp_path, tmp_path / f"{name}.log") as cluster:
        yield cluster


def alive_nodes() -> set[str]:
    return set(Node.objects.alive().values_list("name", flat=True))


@pytest.mark.slow
@pytest.mark.usefixtures("file_database", "enqueue_only")
def test_two_real_nodes_score_a_job_with_instance_count_2(
    cast, tmp_path, settings, monkeypatch
):
    # Every run() waits until both nodes' scoring processes have started.
    endpoint = deploy_script(
        cast.workspace, cast.owner, "rendezvous.py", files=FILES, mini_batch_size=1,
        instance_count=2, max_concurrency_per_instance=1,
        environment_variables={"RENDEZVOUS_DIR": str(tmp_path / "peers"), "PEERS": "2"},
    )  # fmt: skip
    monkeypatch.setenv("STUDIO_NODE_HEARTBEAT_S", "1")
    settings.STUDIO_NODE_HEARTBEAT_S = 1

    with ExitStack() as stack:
        for name in NODES:
            stack.enter_context(node(name, tmp_path, settings))
        wait_for(lambda: alive_nodes() == set(NODES), 20, "both nodes' heartbeats")
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")
        wait_for(
            lambda: Job.objects.get(pk=job.pk).status in JobStatus.TERMINAL,
            30,
            "the job to end",
        )

    job.refresh_from_db()
    assert (job.status, job.error) == (JobStatus.COMPLETED, "")
    assert (job.items_succeeded, job.items_failed) == (FILES, 0)
    output = Path(job.job_dir, "outputs/predictions.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in output] == NAMES
    logs = Path(job.job_dir, "logs")
    assert {p.name for p in (logs / "sys/node").iterdir()} == set(NODES)
    helper = ({"node-a", "node-b"} - {job.node}).pop()
    assert taking_part(job) == [(0, job.node), (1, helper)]
