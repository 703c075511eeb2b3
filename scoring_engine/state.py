"""The mini-batch ledger: claims, attempts, outcomes, counts; the truth of progress.

One small interface (`MiniBatchLedger`) so a job spread over several nodes
can keep it in a database they share (the studio does); `Ledger` lives in the
orchestrator's memory and is shared by its agent threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class BatchState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Claim:
    """The right of one agent to run one attempt of one mini-batch."""

    index: int
    attempt: int
    agent: str
    deadline: float | None


@dataclass(frozen=True)
class Progress:
    """Counts at one moment, for progress logs, ETA and thresholds."""

    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    items_succeeded: int
    items_failed: int

    @property
    def processed(self) -> int:
        return self.succeeded + self.failed

    @property
    def finished(self) -> bool:
        return self.processed == self.total


class MiniBatchLedger(Protocol):
    """What agents, the ordered output and the orchestrator need of a ledger.

    `stop(cause)` ends claiming for every agent on every node; a cause
    (message, log to open) fails the job. `expire` is the orchestrator's
    periodic sweep for attempts whose agent was lost. `thread_done` is called
    by each agent thread as it ends, to release what the ledger held for it.
    """

    def claim(
        self, agent: str, now: float, lease: float | None = None
    ) -> Claim | None: ...
    def succeed(
        self, claim: Claim, items_succeeded: int, items_failed: int
    ) -> bool: ...
    def fail(self, claim: Claim) -> BatchState | None: ...
    def expire(self, now: float) -> list[Claim]: ...
    def stop(self, cause: tuple[str, str] | None = None) -> None: ...
    @property
    def stop_cause(self) -> tuple[str, str] | None: ...
    def outcome(self, index: int) -> tuple[BatchState, int, int]: ...
    def restore(self, done: int, failed: int, items: tuple[int, int]) -> None: ...
    def progress(self) -> Progress: ...
    @property
    def generation(self) -> int: ...
    def wait_for_change(self, seen: int, timeout: float) -> None: ...
    def wait_for_work(self, timeout: float) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def thread_done(self) -> None: ...


@dataclass
class _Entry:
    item_count: int
    state: BatchState = BatchState.PENDING
    attempt: int = 0
    agent: str = ""
    deadline: float | None = None
    items_succeeded: int = 0
    items_failed: int = 0


class Ledger:
    """Thread-safe ledger of one job's mini-batches; lowest pending index first.

    Counts and the running set are kept up to date on every transition, so
    progress and lease checks cost the same for ten mini-batches or 100,000.
    """

    def __init__(self, item_counts: Sequence[int], tries: int) -> None:
        self._entries = [_Entry(item_count=count) for count in item_counts]
        self._tries = tries
        self._next_pending = 0
        self._changed = threading.Condition()
        self._counts = dict.fromkeys(BatchState, 0)
        self._counts[BatchState.PENDING] = len(self._entries)
        self._running: set[int] = set()
        self._items_succeeded = 0
        self._items_failed = 0
        self._stopped = False
        self._stop_cause: tuple[str, str] | None = None
        # Bumped on every change, so a waiter that looked at the ledger can
        # tell whether anything happened since, without missing a wake-up.
        self._generation = 0

    def claim(self, agent: str, now: float, lease: float | None = None) -> Claim | None:
        """Take the lowest pending mini-batch; None when none is pending."""
        with self._changed:
            if self._stopped or not self._counts[BatchState.PENDING]:
                return None
            self._advance()
            index = self._next_pending
            entry = self._entries[index]
            self._move(index, entry, BatchState.RUNNING)
            entry.attempt += 1
            entry.agent = agent
            entry.deadline = None if lease is None else now + lease
            return Claim(index, entry.attempt, agent, entry.deadline)

    def succeed(self, claim: Claim, items_succeeded: int, items_failed: int) -> bool:
        """Record a committed attempt; False when the claim went stale (ignored)."""
        with self._changed:
            entry = self._owned(claim)
            if entry is None:
                return False
            self._move(claim.index, entry, BatchState.SUCCEEDED)
            entry.items_succeeded, entry.items_failed = items_succeeded, items_failed
            self._items_succeeded += items_succeeded
            self._items_failed += items_failed
            self._notify()
            return True

    def fail(self, claim: Claim) -> BatchState | None:
        """Record a failed attempt; returns PENDING (will retry) or FAILED.

        None when the claim went stale, or the job is ending: an attempt cut
        short by the job's own stop is not the mini-batch's fault, and a
        resumed job runs it again.
        """
        with self._changed:
            entry = self._owned(claim)
            if entry is None or self._stopped:
                return None
            self._fail_attempt(claim.index, entry)
            return entry.state

    def expire(self, now: float) -> list[Claim]:
        """Count attempts whose lease ran out (their agent was lost) as failed."""
        expired = []
        with self._changed:
            for index in sorted(self._running):
                entry = self._entries[index]
                if entry.deadline is not None and entry.deadline < now:
                    expired.append(
                        Claim(index, entry.attempt, entry.agent, entry.deadline)
                    )
                    self._fail_attempt(index, entry)
        return expired

    def stop(self, cause: tuple[str, str] | None = None) -> None:
        """No more claims: the job is ending; a cause (the first kept) fails it."""
        with self._changed:
            self._stopped = True
            if self._stop_cause is None:
                self._stop_cause = cause
            self._notify()

    @property
    def stop_cause(self) -> tuple[str, str] | None:
        with self._changed:
            return self._stop_cause

    def thread_done(self) -> None:
        """Nothing is held per thread here."""

    def state(self, index: int) -> BatchState:
        with self._changed:
            return self._entries[index].state

    def outcome(self, index: int) -> tuple[BatchState, int, int]:
        """(state, items succeeded, items failed) of one mini-batch."""
        with self._changed:
            entry = self._entries[index]
            return entry.state, entry.items_succeeded, entry.items_failed

    def restore(self, done: int, failed: int, items: tuple[int, int]) -> None:
        """Take mini-batches 0..done-1 as finished by an earlier run of the job.

        `failed` of them failed for good; `items` is (succeeded, failed) over
        them. Which ones failed no longer matters: their output is written.
        """
        with self._changed:
            for index in range(done):
                self._move(index, self._entries[index], BatchState.SUCCEEDED)
            self._counts[BatchState.SUCCEEDED] -= failed
            self._counts[BatchState.FAILED] += failed
            self._items_succeeded, self._items_failed = items
            self._notify()

    def progress(self) -> Progress:
        with self._changed:
            return Progress(
                total=len(self._entries),
                pending=self._counts[BatchState.PENDING],
                running=self._counts[BatchState.RUNNING],
                succeeded=self._counts[BatchState.SUCCEEDED],
                failed=self._counts[BatchState.FAILED],
                items_succeeded=self._items_succeeded,
                items_failed=self._items_failed,
            )

    @property
    def generation(self) -> int:
        with self._changed:
            return self._generation

    def wait_for_change(self, seen: int, timeout: float) -> None:
        """Block until the ledger changed after generation `seen`, or `timeout` s."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen, timeout)

    def wait_for_work(self, timeout: float) -> bool:
        """Block until a mini-batch is pending, or everything is done/stopped.

        Returns True when there may be work to claim.
        """
        with self._changed:
            return (
                self._changed.wait_for(
                    lambda: self._closed() or self._counts[BatchState.PENDING] > 0,
                    timeout,
                )
                and not self._closed()
            )

    @property
    def closed(self) -> bool:
        """Nothing will ever be claimable again: all done, or stopped."""
        with self._changed:
            return self._closed()

    def _closed(self) -> bool:
        done = self._counts[BatchState.SUCCEEDED] + self._counts[BatchState.FAILED]
        return self._stopped or done == len(self._entries)

    def _notify(self) -> None:
        self._generation += 1
        self._changed.notify_all()

    def _owned(self, claim: Claim) -> _Entry | None:
        entry = self._entries[claim.index]
        if entry.state is not BatchState.RUNNING or entry.attempt != claim.attempt:
            return None
        return entry

    def _move(self, index: int, entry: _Entry, state: BatchState) -> None:
        self._counts[entry.state] -= 1
        self._counts[state] += 1
        if state is BatchState.RUNNING:
            self._running.add(index)
        else:
            self._running.discard(index)
        entry.state = state

    def _fail_attempt(self, index: int, entry: _Entry) -> None:
        if entry.attempt >= self._tries:
            self._move(index, entry, BatchState.FAILED)
            entry.items_failed = entry.item_count
            self._items_failed += entry.item_count
        else:
            self._move(index, entry, BatchState.PENDING)
            self._next_pending = min(self._next_pending, index)
        self._notify()

    def _advance(self) -> None:
        while self._entries[self._next_pending].state is not BatchState.PENDING:
            self._next_pending += 1
