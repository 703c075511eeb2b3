"""The mini-batch ledger of a job spread over nodes, kept in the database they share.

`DatabaseLedger` is the engine's `MiniBatchLedger` over JobRun / RunBatch /
RunInstance rows. Claims take the lowest pending row with SELECT ... FOR
UPDATE SKIP LOCKED (PostgreSQL; SQLite serializes writers anyway). A
node's heartbeat on its RunInstance row is its lease on every mini-batch it
claimed: the orchestrator's `expire` fails the attempts of a node silent for
STUDIO_INSTANCE_STALE_S, and they run again elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from scoring_engine import BatchState, Claim, Progress

from . import ledger_postgres as postgres
from .models import Job, JobRun, JobStatus, RunBatch, RunInstance

# How long a node waits on its own ledger object before it looks at the
# database again for other nodes' changes.
POLL_S = 0.2
# How often, at most, finished outcomes, the stop flag and the counts are
# read again: each read is a query every node's loop would otherwise repeat.
_OUTCOMES_EVERY_S = 0.1
_STATE_EVERY_S = 0.25
_PROGRESS_EVERY_S = 0.5
BEAT_EVERY_S = 1.0
_FINISHED = (BatchState.SUCCEEDED, BatchState.FAILED)
_CHUNK = 2000


class DatabaseLedger:
    """One node's handle on a JobRun's shared ledger; thread-safe."""

    def __init__(
        self,
        job_run: JobRun,
        instance: RunInstance,
        on_open: Callable[[], None] = lambda: None,
        item_counts: Sequence[int] = (),
    ) -> None:
        self.job_run = job_run
        self.instance = instance
        self._on_open = on_open
        # Only the orchestrator's ledger writes the rows (`restore`).
        self._item_counts = list(item_counts)
        self._changed = threading.Condition()
        self._generation = 0
        self._restored = (0, 0, (0, 0))
        self._outcomes: dict[int, tuple[BatchState, int, int]] = {}
        self._outcomes_read_at = 0.0
        self._state_read_at = 0.0
        self._stopped = False
        self._finished = False
        self._cause: tuple[str, str] | None = None
        self._progress: Progress | None = None
        self._progress_read_at = 0.0
        self._beaten_at = 0.0
        self._expired_at = 0.0
        self.lost = False

    @classmethod
    def open(
        cls,
        job: Job,
        node: str,
        item_counts: Sequence[int],
        tries: int,
        on_open: Callable[[], None] = lambda: None,
    ) -> DatabaseLedger:
        """The orchestrator's ledger for `job`'s current run; stops earlier runs.

        Its mini-batch rows are written by `restore`, which the orchestrator
        calls once before any claim; `on_open` is called then, so helpers
        are only asked to join a ledger that is ready.
        """
        with transaction.atomic():
            earlier = JobRun.objects.filter(job=job)
            earlier.update(stopped=True)
            RunBatch.objects.filter(job_run__in=earlier).delete()
            job_run = JobRun.objects.create(
                job=job, run=job.runs, total=len(item_counts), tries=tries
            )
            instance = RunInstance.objects.create(
                job_run=job_run, node=node, number=0, heartbeat_at=timezone.now()
            )
        return cls(job_run, instance, on_open, item_counts)

    @classmethod
    def join(cls, job_run: JobRun, node: str, number: int) -> DatabaseLedger | None:
        """A helper's ledger; None when `node` or `number` already takes part."""
        try:
            with transaction.atomic():
                instance = RunInstance.objects.create(
                    job_run=job_run,
                    node=node,
                    number=number,
                    heartbeat_at=timezone.now(),
                )
        except IntegrityError:
            return None
        return cls(job_run, instance)

    # Claims and outcomes, from agent threads.

    def claim(self, agent: str, now: float, lease: float | None = None) -> Claim | None:
        if self.closed:
            return None
        if connection.vendor == "postgresql":
            claimed = postgres.claim(self.job_run.pk, self.instance, agent)
        else:
            claimed = self._claim_in_a_transaction(agent)
        if claimed is None:
            if not RunInstance.objects.filter(pk=self.instance.pk, lost=False).exists():
                self.lost = True
                self._notify()
            return None
        index, attempt = claimed
        return Claim(index, attempt, agent, None)

    def _claim_in_a_transaction(self, agent: str) -> tuple[int, int] | None:
        """SQLite: writers are serialized, so the lease check and the claim agree."""
        with transaction.atomic():
            if not RunInstance.objects.filter(pk=self.instance.pk, lost=False).exists():
                return None
            row = (
                RunBatch.objects.filter(job_run=self.job_run, state=BatchState.PENDING)
                .order_by("index")
                .first()
            )
            if row is None:
                return None
            row.state, row.attempt = BatchState.RUNNING, row.attempt + 1
            row.node, row.process = self.instance.node, agent
            row.save(update_fields=["state", "attempt", "node", "process"])
        return row.index, row.attempt

    def succeed(self, claim: Claim, items_succeeded: int, items_failed: int) -> bool:
        done = self._owned(claim).update(
            state=BatchState.SUCCEEDED,
            items_succeeded=items_succeeded,
            items_failed=items_failed,
        )
        self._notify()
        return bool(done)

    def fail(self, claim: Claim) -> BatchState | None:
        """As the engine's Ledger: None when stale or when the run is stopping."""
        with transaction.atomic():
            if JobRun.objects.filter(pk=self.job_run.pk, stopped=True).exists():
                return None
            row = self._owned(claim).select_for_update().first()
            state = None if row is None else self._fail_attempt(row)
        self._notify()
        return state

    def outcome(self, index: int) -> tuple[BatchState, int, int]:
        """Read finished rows in chunks; an unfinished one reads as running."""
        with self._changed:
            # Once stopped, the last assembly of the output must see every outcome.
            fresh = self._stopped or self._due("_outcomes_read_at", _OUTCOMES_EVERY_S)
            if index not in self._outcomes and fresh:
                rows = (
                    RunBatch.objects.filter(
                        job_run=self.job_run,
                        index__gte=index,
                        index__lt=index + _CHUNK,
                        state__in=_FINISHED,
                    )
                    .order_by("index")
                    .values_list("index", "state", "items_succeeded", "items_failed")
                )[:_CHUNK]
                # The ordered output asks in increasing order: older ones are done.
                self._outcomes = {
                    row[0]: (BatchState(row[1]), row[2], row[3]) for row in rows
                }
            return self._outcomes.get(index, (BatchState.RUNNING, 0, 0))

    # The orchestrator's bookkeeping.

    def restore(self, done: int, failed: int, items: tuple[int, int]) -> None:
        """Write the rows: 0..done-1 finished by an earlier run, the rest pending."""
        self._restored = (done, failed, items)
        if connection.vendor == "postgresql":
            postgres.insert_rows(self.job_run.pk, self._item_counts, done)
        else:
            counts = self._item_counts
            for start in range(0, len(counts), _CHUNK):
                RunBatch.objects.bulk_create(
                    RunBatch(
                        job_run=self.job_run,
                        index=index,
                        item_count=counts[index],
                        state=BatchState.SUCCEEDED
                        if index < done
                        else BatchState.PENDING,
                    )
                    for index in range(start, min(start + _CHUNK, len(counts)))
                )
        self._on_open()

    def expire(self, now: float) -> list[Claim]:
        """Beat for this node; take back the claims of nodes that went silent."""
        self.beat()
        if time.monotonic() - self._expired_at < BEAT_EVERY_S:
            return []
        self._expired_at = time.monotonic()
        cutoff = timezone.now() - timedelta(seconds=settings.STUDIO_INSTANCE_STALE_S)
        # Nodes that left stop beating too: whatever they still held is taken back.
        silent = RunInstance.objects.filter(
            job_run=self.job_run, lost=False, heartbeat_at__lt=cutoff
        ).exclude(pk=self.instance.pk)
        expired = []
        for instance in silent:
            with transaction.atomic():
                if not RunInstance.objects.filter(pk=instance.pk, lost=False).update(
                    lost=True
                ):
                    continue
                rows = RunBatch.objects.select_for_update().filter(
                    job_run=self.job_run, state=BatchState.RUNNING, node=instance.node
                )
                for row in rows:
                    agent = f"{row.node}/{row.process}"
                    expired.append(Claim(row.index, row.attempt, agent, None))
                    self._fail_attempt(row)
        if expired:
            self._notify()
        return expired

    def beat(self) -> None:
        """Renew this node's lease (about once a second); notes when it was lost."""
        if time.monotonic() - self._beaten_at < BEAT_EVERY_S:
            return
        self._beaten_at = time.monotonic()
        renewed = RunInstance.objects.filter(pk=self.instance.pk, lost=False).update(
            heartbeat_at=timezone.now()
        )
        if not renewed:
            self.lost = True
            self._notify()

    def leave(self) -> None:
        """This node takes no more part: a helper that ended says so."""
        RunInstance.objects.filter(pk=self.instance.pk).update(left_at=timezone.now())

    def stop(self, cause: tuple[str, str] | None = None) -> None:
        JobRun.objects.filter(pk=self.job_run.pk).update(stopped=True)
        if cause is not None:
            JobRun.objects.filter(pk=self.job_run.pk, stop_cause="").update(
                stop_cause=cause[0], stop_log=cause[1]
            )
        with self._changed:
            self._stopped = True
            self._state_read_at = 0.0
        self._notify()

    @property
    def stop_cause(self) -> tuple[str, str] | None:
        self._refresh_state()
        return self._cause

    def progress(self) -> Progress:
        with self._changed:
            cached = self._progress is not None and not self._stopped
            if cached and not self._due("_progress_read_at", _PROGRESS_EVERY_S):
                return self._progress
        done, restored_failed, (items_ok, items_bad) = self._restored
        counts = dict.fromkeys(BatchState, 0)
        rows = (
            RunBatch.objects.filter(job_run=self.job_run, index__gte=done)
            .values("state")
            .annotate(
                count=Count("id"),
                items_ok=Sum("items_succeeded"),
                items_bad=Sum("items_failed"),
            )
        )
        for row in rows:
            counts[BatchState(row["state"])] = row["count"]
            items_ok += row["items_ok"] or 0
            items_bad += row["items_bad"] or 0
        progress = Progress(
            total=self.job_run.total,
            pending=counts[BatchState.PENDING],
            running=counts[BatchState.RUNNING],
            succeeded=counts[BatchState.SUCCEEDED] + done - restored_failed,
            failed=counts[BatchState.FAILED] + restored_failed,
            items_succeeded=items_ok,
            items_failed=items_bad,
        )
        with self._changed:
            self._progress = progress
        return progress

    # Waiting, closing.

    @property
    def generation(self) -> int:
        with self._changed:
            return self._generation

    def wait_for_change(self, seen: int, timeout: float) -> None:
        """Wake on this node's changes at once, on other nodes' within POLL_S."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._generation != seen, min(timeout, POLL_S)
            )

    def wait_for_work(self, timeout: float) -> bool:
        with self._changed:
            self._changed.wait(min(timeout, POLL_S))
        return not self.closed

    @property
    def closed(self) -> bool:
        self._refresh_state()
        return self.lost or self._stopped or self._finished

    def thread_done(self) -> None:
        """An agent thread ends: close the database connection Django opened for it."""
        connection.close()

    # Helpers.

    def _owned(self, claim: Claim):  # noqa: ANN202 - a RunBatch queryset
        return RunBatch.objects.filter(
            job_run=self.job_run,
            index=claim.index,
            state=BatchState.RUNNING,
            attempt=claim.attempt,
        )

    def _fail_attempt(self, row: RunBatch) -> BatchState:
        if row.attempt >= self.job_run.tries:
            row.state, row.items_failed = BatchState.FAILED, row.item_count
        else:
            row.state = BatchState.PENDING
        row.save(update_fields=["state", "items_failed"])
        return BatchState(row.state)

    def _refresh_state(self) -> None:
        with self._changed:
            if not self._due("_state_read_at", _STATE_EVERY_S):
                return
        stopped, cause, log, runs, status = JobRun.objects.values_list(
            "stopped", "stop_cause", "stop_log", "job__runs", "job__status"
        ).get(pk=self.job_run.pk)
        # A run the job no longer belongs to is over, whoever runs the job
        # now (a recovery on one node uses no shared ledger to stop this one).
        stopped = stopped or runs != self.job_run.run or status != JobStatus.RUNNING
        unfinished = RunBatch.objects.filter(
            job_run=self.job_run,
            state__in=(BatchState.PENDING, BatchState.RUNNING),
        ).exists()
        with self._changed:
            self._stopped = self._stopped or stopped
            self._cause = (cause, log) if cause else None
            self._finished = not unfinished

    def _due(self, stamp: str, every_s: float) -> bool:
        """Whether the value read at `stamp` is older than `every_s`; marks it read."""
        now = time.monotonic()
        if now - getattr(self, stamp) < every_s:
            return False
        setattr(self, stamp, now)
        return True

    def _notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()
