"""The mini-batch ledger: claims, attempts, outcomes, counts; the truth of progress.

One small interface (`claim`, `succeed`, `fail`, `expire`, `progress`) so a
job can later keep it in a database shared by many nodes; this implementation
lives in the orchestrator's memory and is shared by its agent threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


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


@dataclass
class _Entry:
    item_count: int
    state: BatchState = BatchState.PENDING
    attempt: int = 0
    agent: str = ""
    deadline: float | None = None


class Ledger:
    """Thread-safe ledger of one job's mini-batches; lowest pending index first."""

    def __init__(self, item_counts: Sequence[int], tries: int) -> None:
        self._entries = [_Entry(item_count=count) for count in item_counts]
        self._tries = tries
        self._next_pending = 0
        self._changed = threading.Condition()
        self._items_succeeded = 0
        self._items_failed = 0
        self._stopped = False
        self._pending = len(self._entries)
        self._done = 0

    def claim(self, agent: str, now: float, lease: float | None = None) -> Claim | None:
        """Take the lowest pending mini-batch; None when none is pending."""
        with self._changed:
            if self._stopped:
                return None
            for index in range(self._next_pending, len(self._entries)):
                entry = self._entries[index]
                if entry.state is BatchState.PENDING:
                    entry.state = BatchState.RUNNING
                    entry.attempt += 1
                    entry.agent = agent
                    entry.deadline = None if lease is None else now + lease
                    self._pending -= 1
                    self._advance()
                    return Claim(index, entry.attempt, agent, entry.deadline)
            return None

    def succeed(self, claim: Claim, items_succeeded: int, items_failed: int) -> bool:
        """Record a committed attempt; False when the claim went stale (ignored)."""
        with self._changed:
            entry = self._owned(claim)
            if entry is None:
                return False
            entry.state = BatchState.SUCCEEDED
            self._done += 1
            self._items_succeeded += items_succeeded
            self._items_failed += items_failed
            self._changed.notify_all()
            return True

    def fail(self, claim: Claim) -> BatchState | None:
        """Record a failed attempt; returns PENDING (will retry) or FAILED.

        None when the claim went stale.
        """
        with self._changed:
            entry = self._owned(claim)
            if entry is None:
                return None
            self._fail_attempt(claim.index, entry)
            return entry.state

    def expire(self, now: float) -> list[Claim]:
        """Count attempts whose lease ran out (their agent was lost) as failed."""
        expired = []
        with self._changed:
            for index, entry in enumerate(self._entries):
                if (
                    entry.state is BatchState.RUNNING
                    and entry.deadline is not None
                    and entry.deadline < now
                ):
                    expired.append(
                        Claim(index, entry.attempt, entry.agent, entry.deadline)
                    )
                    self._fail_attempt(index, entry)
        return expired

    def stop(self) -> None:
        """No more claims: the job is ending."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def state(self, index: int) -> BatchState:
        with self._changed:
            return self._entries[index].state

    def progress(self) -> Progress:
        with self._changed:
            counts = {state: 0 for state in BatchState}
            for entry in self._entries:
                counts[entry.state] += 1
            return Progress(
                total=len(self._entries),
                pending=counts[BatchState.PENDING],
                running=counts[BatchState.RUNNING],
                succeeded=counts[BatchState.SUCCEEDED],
                failed=counts[BatchState.FAILED],
                items_succeeded=self._items_succeeded,
                items_failed=self._items_failed,
            )

    def wait(self, timeout: float) -> None:
        """Block until any change (commit, failure, stop) or `timeout` s."""
        with self._changed:
            self._changed.wait(timeout)

    def wait_for_work(self, timeout: float) -> bool:
        """Block until a mini-batch is pending, or everything is done/stopped.

        Returns True when there may be work to claim.
        """
        with self._changed:
            return self._changed.wait_for(
                lambda: self._stopped or self._has_pending() or self._all_done(),
                timeout,
            ) and not (self._stopped or self._all_done())

    @property
    def closed(self) -> bool:
        """Nothing will ever be claimable again: all done, or stopped."""
        with self._changed:
            return self._stopped or self._all_done()

    def _owned(self, claim: Claim) -> _Entry | None:
        entry = self._entries[claim.index]
        if entry.state is not BatchState.RUNNING or entry.attempt != claim.attempt:
            return None
        return entry

    def _fail_attempt(self, index: int, entry: _Entry) -> None:
        if entry.attempt >= self._tries:
            entry.state = BatchState.FAILED
            self._done += 1
            self._items_failed += entry.item_count
        else:
            entry.state = BatchState.PENDING
            self._pending += 1
            self._next_pending = min(self._next_pending, index)
        self._changed.notify_all()

    def _advance(self) -> None:
        while (
            self._next_pending < len(self._entries)
            and self._entries[self._next_pending].state is not BatchState.PENDING
        ):
            self._next_pending += 1

    def _has_pending(self) -> bool:
        return self._pending > 0

    def _all_done(self) -> bool:
        return self._done == len(self._entries)
