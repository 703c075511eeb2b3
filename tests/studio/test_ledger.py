"""The database ledger of a job spread over nodes: claims, attempts, leases, stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
from django.utils import timezone

from scoring_engine import BatchState, Claim, Progress
from studio.ledger import DatabaseLedger
from studio.models import Job, JobRun, JobStatus, RunBatch, RunInstance, Workspace
from tests.studio.test_jobs_support import (  # noqa: F401 - fixture
    file_database,
    make_job,
    wait_for,
)

# Items in each mini-batch of the job under test.
COUNTS = (3, 3, 3, 2)


def running_job() -> Job:
    """A job row claimed once (run 1) by node-a."""
    workspace = Workspace.objects.create(name="team")
    return make_job(workspace, status=JobStatus.RUNNING, runs=1, node="node-a")


def orchestrate(
    job: Job,
    counts: Sequence[int] = COUNTS,
    tries: int = 2,
    done: int = 0,
    failed: int = 0,
    items: tuple[int, int] = (0, 0),
) -> DatabaseLedger:
    """node-a's ledger for the job's current run, its rows written as run_job does."""
    ledger = DatabaseLedger.open(job, "node-a", counts, tries)
    ledger.restore(done, failed, items)
    return ledger


def helper(
    ledger: DatabaseLedger, node: str = "node-b", number: int = 1
) -> DatabaseLedger:
    """`node`'s ledger on the same run, as helper `number`."""
    joined = DatabaseLedger.join(ledger.job_run, node, number)
    assert joined is not None
    return joined


def rows(ledger: DatabaseLedger) -> list[tuple[str, int, str]]:
    """(state, attempt, node/process) of each of the run's mini-batches, in order."""
    batches = RunBatch.objects.filter(job_run=ledger.job_run).order_by("index")
    return [(b.state, b.attempt, f"{b.node}/{b.process}") for b in batches]


def go_silent(ledger: DatabaseLedger, seconds: float) -> None:
    """The node of `ledger` last beat `seconds` ago."""
    beat = timezone.now() - timedelta(seconds=seconds)
    RunInstance.objects.filter(pk=ledger.instance.pk).update(heartbeat_at=beat)


@pytest.fixture
def job(db: None) -> Job:
    return running_job()


def test_it_hands_out_mini_batches_in_index_order_to_every_node(job):
    a = orchestrate(job)
    b = helper(a)

    claims = [
        a.claim("process000", 0.0),
        b.claim("process000", 0.0),
        b.claim("process001", 0.0),
        a.claim("process000", 0.0),
    ]

    assert [(c.index, c.attempt) for c in claims] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert (a.claim("process000", 0.0), b.claim("process000", 0.0)) == (None, None)
    assert rows(a) == [
        ("running", 1, "node-a/process000"),
        ("running", 1, "node-b/process000"),
        ("running", 1, "node-b/process001"),
        ("running", 1, "node-a/process000"),
    ]


@pytest.mark.usefixtures("file_database")
def test_two_nodes_claiming_from_threads_at_once_never_share_a_mini_batch():
    job = running_job()
    agents, rounds = 4, 10
    a = orchestrate(job, counts=[1] * agents * rounds)
    b = helper(a)
    # Every round, the four agents claim at the same moment: SQLite's busy
    # handler would otherwise let one thread take everything.
    together = threading.Barrier(agents, timeout=30)
    taken: dict[str, list[int | None]] = {}
    errors: list[BaseException] = []

    def agent(ledger: DatabaseLedger, process: str) -> None:
        mine = taken.setdefault(f"{ledger.instance.node}/{process}", [])
        try:
            for _ in range(rounds):
                together.wait()
                claim = ledger.claim(process, time.monotonic())
                mine.append(claim.index)
                ledger.succeed(claim, 1, 0)
            together.wait()
            mine.append(ledger.claim(process, time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            together.abort()
        finally:
            ledger.thread_done()

    threads = [
        threading.Thread(target=agent, args=(ledger, f"process{n:03d}"))
        for ledger in (a, b)
        for n in range(agents // 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert all(indexes[-1] is None for indexes in taken.values()), "none left"
    for number in range(rounds):
        claimed = sorted(indexes[number] for indexes in taken.values())
        lowest = number * agents
        assert claimed == list(range(lowest, lowest + agents)), "once, in order"
    assert {state for state, _, _ in rows(a)} == {"succeeded"}
    assert wait_for(lambda: a.progress().finished, 5, "progress to catch up")
    assert a.progress().items_succeeded == agents * rounds


def test_a_failed_attempt_is_retried_and_the_last_try_fails_its_mini_batch(job):
    ledger = orchestrate(job, tries=2)

    first = ledger.claim("process000", 0.0)
    assert ledger.fail(first) is BatchState.PENDING
    assert rows(ledger)[0] == ("pending", 1, "node-a/process000")
    second = ledger.claim("process001", 0.0)
    assert (second.index, second.attempt) == (0, 2), "lowest pending first"
    assert ledger.fail(second) is BatchState.FAILED

    failed = RunBatch.objects.get(job_run=ledger.job_run, index=0)
    assert (failed.state, failed.items_succeeded, failed.items_failed) == (
        "failed",
        0,
        COUNTS[0],
    )
    assert ledger.claim("process000", 0.0).index == 1
    expected = Progress(
        total=4, pending=2, running=1, succeeded=0, failed=1,
        items_succeeded=0, items_failed=COUNTS[0],
    )  # fmt: skip
    wait_for(lambda: ledger.progress() == expected, 5, f"progress {expected}")


def test_a_succeeded_attempt_records_its_item_counts(job):
    ledger = orchestrate(job)
    claim = ledger.claim("process000", 0.0)

    assert ledger.succeed(claim, 2, 1) is True

    assert ledger.outcome(0) == (BatchState.SUCCEEDED, 2, 1)
    assert rows(ledger)[0] == ("succeeded", 1, "node-a/process000")


def test_a_stale_claim_changes_nothing(job):
    ledger = orchestrate(job, tries=3)
    old = ledger.claim("process000", 0.0)
    ledger.fail(old)
    new = ledger.claim("process001", 0.0)

    assert ledger.succeed(old, 3, 0) is False
    assert ledger.fail(old) is None
    assert rows(ledger)[0] == ("running", 2, "node-a/process001")
    assert ledger.succeed(new, 3, 0) is True
    assert ledger.outcome(0) == (BatchState.SUCCEEDED, 3, 0)


def test_a_failure_after_the_run_stopped_is_not_counted(job):
    ledger = orchestrate(job, tries=1)
    claim = ledger.claim("process000", 0.0)

    ledger.stop()

    assert ledger.fail(claim) is None
    assert rows(ledger)[0] == ("running", 1, "node-a/process000")
    assert ledger.closed
    assert ledger.claim("process000", 0.0) is None


def test_restore_takes_the_first_mini_batches_as_done_with_their_counts(job):
    ledger = orchestrate(job, done=2, failed=1, items=(3, 3))

    assert ledger.progress() == Progress(
        total=4, pending=2, running=0, succeeded=1, failed=1,
        items_succeeded=3, items_failed=3,
    )  # fmt: skip
    assert [state for state, _, _ in rows(ledger)] == [
        "succeeded",
        "succeeded",
        "pending",
        "pending",
    ]
    claim = ledger.claim("process000", 0.0)
    assert claim.index == 2
    ledger.succeed(claim, 2, 1)
    expected = Progress(
        total=4, pending=1, running=0, succeeded=2, failed=1,
        items_succeeded=5, items_failed=4,
    )  # fmt: skip
    wait_for(lambda: ledger.progress() == expected, 5, f"progress {expected}")


def test_a_stop_with_a_cause_closes_the_run_on_every_node(job):
    a = orchestrate(job)
    b = helper(a)
    assert not a.closed and a.stop_cause is None

    b.stop(("init() failed: no model", "logs/user/error/node-b/process000.txt"))
    a.stop(("a later cause", "logs/sys/master_role.txt"))

    wait_for(lambda: a.closed, 5, "node-a to see the stop")
    assert a.stop_cause == (
        "init() failed: no model",
        "logs/user/error/node-b/process000.txt",
    ), "the first cause is kept"
    assert a.claim("process000", 0.0) is None
    assert JobRun.objects.get(pk=a.job_run.pk).stopped


def test_expire_takes_back_the_mini_batches_of_a_silent_node(job, settings):
    settings.STUDIO_INSTANCE_STALE_S = 30
    a = orchestrate(job, tries=2)
    b = helper(a)
    b.claim("process000", 0.0)
    b.fail(b.claim("process001", 0.0))
    assert b.claim("process001", 0.0) == Claim(1, 2, "process001", None)
    a.claim("process000", 0.0)

    go_silent(b, 31)
    expired = a.expire(time.monotonic())

    assert sorted(expired, key=lambda claim: claim.index) == [
        Claim(0, 1, "node-b/process000", None),
        Claim(1, 2, "node-b/process001", None),
    ]
    assert rows(a)[:3] == [
        ("pending", 1, "node-b/process000"),
        ("failed", 2, "node-b/process001"),
        ("running", 1, "node-a/process000"),
    ]
    assert RunBatch.objects.get(job_run=a.job_run, index=1).items_failed == COUNTS[1]
    lost = dict(RunInstance.objects.values_list("node", "lost"))
    assert lost == {"node-a": False, "node-b": True}
    assert DatabaseLedger(a.job_run, a.instance).expire(time.monotonic()) == []


def test_expire_leaves_a_node_that_beats_alone(job, settings):
    settings.STUDIO_INSTANCE_STALE_S = 30
    a = orchestrate(job)
    b = helper(a)
    b.claim("process000", 0.0)
    go_silent(b, 29)

    assert a.expire(time.monotonic()) == []
    assert rows(a)[0] == ("running", 1, "node-b/process000")


def test_a_lost_node_learns_it_at_its_next_beat_and_its_results_are_ignored(
    job, settings
):
    settings.STUDIO_INSTANCE_STALE_S = 30
    a = orchestrate(job)
    b = helper(a)
    claim = b.claim("process000", 0.0)
    go_silent(b, 31)
    a.expire(time.monotonic())

    b.beat()

    assert b.lost and b.closed
    assert b.succeed(claim, 3, 0) is False
    assert rows(a)[0] == ("pending", 1, "node-b/process000")


def test_a_lost_node_claims_nothing_even_before_its_next_beat(job, settings):
    settings.STUDIO_INSTANCE_STALE_S = 30
    a = orchestrate(job)
    b = helper(a)
    b.claim("process000", 0.0)
    go_silent(b, 31)
    a.expire(time.monotonic())

    # Nothing expires a lost node again: a claim now would never be taken back.
    assert b.claim("process001", 0.0) is None

    assert b.lost and b.closed
    assert [node for _, _, node in rows(a)] == ["node-b/process000", "/", "/", "/"]
    assert a.claim("process000", 0.0).index == 0


def test_join_refuses_a_node_or_a_number_already_taking_part(job):
    a = orchestrate(job)
    b = helper(a, "node-b", 1)

    assert DatabaseLedger.join(a.job_run, "node-a", 2) is None
    assert DatabaseLedger.join(a.job_run, "node-b", 2) is None
    assert DatabaseLedger.join(a.job_run, "node-c", 1) is None
    assert DatabaseLedger.join(a.job_run, "node-c", 0) is None
    taking_part = RunInstance.objects.filter(job_run=a.job_run)
    assert list(taking_part.values_list("number", "node")) == [
        (0, "node-a"),
        (1, "node-b"),
    ]
    assert b.instance.number == 1


def test_open_stops_the_earlier_runs_of_the_job_and_deletes_their_rows(job):
    first = orchestrate(job)
    late = first.claim("process000", 0.0)
    Job.objects.filter(pk=job.pk).update(runs=2)  # a recovery claimed the job
    job.refresh_from_db()

    second = orchestrate(job)

    assert JobRun.objects.get(pk=first.job_run.pk).stopped
    assert not RunBatch.objects.filter(job_run=first.job_run).exists()
    assert (second.job_run.run, len(rows(second))) == (2, 4)
    wait_for(lambda: first.closed, 5, "the first run to see it was stopped")
    assert first.succeed(late, 3, 0) is False
    assert rows(second)[0] == ("pending", 0, "/")
    # Who took part in the first run is kept.
    assert RunInstance.objects.filter(job_run=first.job_run).count() == 1


def test_outcome_reads_finished_mini_batches_and_unfinished_as_running(job):
    ledger = orchestrate(job, tries=1)
    claims = [ledger.claim("process000", 0.0) for _ in range(3)]
    ledger.succeed(claims[0], 3, 0)
    ledger.fail(claims[2])

    assert [ledger.outcome(index) for index in range(4)] == [
        (BatchState.SUCCEEDED, 3, 0),
        (BatchState.RUNNING, 0, 0),
        (BatchState.FAILED, 0, COUNTS[2]),
        (BatchState.RUNNING, 0, 0),
    ]
    ledger.succeed(claims[1], 2, 1)
    wait_for(
        lambda: ledger.outcome(1) == (BatchState.SUCCEEDED, 2, 1),
        5,
        "mini-batch 1's outcome",
    )


def test_once_stopped_outcomes_are_read_fresh_for_the_last_assembly(job):
    ledger = orchestrate(job)
    b = helper(ledger)
    claim = b.claim("process000", 0.0)
    assert ledger.outcome(claim.index)[0] is BatchState.RUNNING
    b.succeed(claim, 3, 0)

    # The orchestrator stops the ledger, then assembles the output one last
    # time: what finished a moment ago must be in it.
    ledger.stop()

    assert ledger.outcome(claim.index) == (BatchState.SUCCEEDED, 3, 0)


@pytest.mark.parametrize(
    "change",
    [{"runs": 2, "status": JobStatus.RUNNING}, {"status": JobStatus.CANCELED}],
    ids=["taken-over-by-a-later-run", "ended"],
)
def test_a_run_the_job_left_is_closed_for_its_helpers(job, change):
    b = helper(orchestrate(job))
    assert not b.closed

    # A recovery on a lone node runs the job without a shared ledger, so
    # nothing stops this run's rows: the job's own row says it moved on.
    Job.objects.filter(pk=job.pk).update(**change)

    wait_for(lambda: b.closed, 5, "the helper to see the job left its run")
    assert b.claim("process000", time.monotonic()) is None
