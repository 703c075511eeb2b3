"""The mini-batch ledger: claim order, retries, stale claims, leases, counts."""

from __future__ import annotations

from scoring_engine.state import BatchState, Ledger


def test_it_hands_out_the_lowest_pending_mini_batch_first():
    ledger = Ledger([2, 2, 2], tries=2)

    first, second = ledger.claim("a", 0), ledger.claim("b", 0)
    assert (first.index, second.index) == (0, 1)
    assert ledger.fail(first) is BatchState.PENDING

    assert ledger.claim("c", 0).index == 0, "a retry goes before later work"
    assert ledger.claim("c", 0).index == 2
    assert ledger.claim("c", 0) is None


def test_a_mini_batch_fails_for_good_after_its_tries_and_counts_its_items():
    ledger = Ledger([3], tries=2)

    assert ledger.fail(ledger.claim("a", 0)) is BatchState.PENDING
    assert ledger.fail(ledger.claim("a", 0)) is BatchState.FAILED

    progress = ledger.progress()
    assert (progress.failed, progress.items_failed, progress.finished) == (1, 3, True)
    assert ledger.closed


def test_a_stale_claim_cannot_commit_twice():
    ledger = Ledger([1], tries=3)
    lost = ledger.claim("a", now=0, lease=5)

    assert [c.index for c in ledger.expire(now=10)] == [0]
    retry = ledger.claim("b", now=10, lease=5)

    assert ledger.succeed(lost, 1, 0) is False
    assert ledger.succeed(retry, 1, 0) is True
    assert ledger.progress().items_succeeded == 1
    assert ledger.state(0) is BatchState.SUCCEEDED


def test_progress_counts_every_state():
    ledger = Ledger([1, 1, 1, 1], tries=1)
    ledger.succeed(ledger.claim("a", 0), 1, 0)
    ledger.fail(ledger.claim("a", 0))
    ledger.claim("a", 0)

    progress = ledger.progress()

    counts = (progress.succeeded, progress.failed, progress.running, progress.pending)
    assert counts == (1, 1, 1, 1)
    assert progress.processed == 2 and not progress.finished


def test_wait_for_work_says_no_once_stopped():
    ledger = Ledger([1], tries=1)
    ledger.claim("a", 0)

    assert ledger.wait_for_work(timeout=0.01) is False
    ledger.stop()
    assert ledger.closed and ledger.claim("b", 0) is None


def test_an_attempt_cut_short_by_the_jobs_end_is_not_counted():
    ledger = Ledger([1, 1], tries=1)
    claim = ledger.claim("a", 0)

    ledger.stop()

    assert ledger.fail(claim) is None
    assert ledger.state(0) is BatchState.RUNNING
    assert ledger.progress().failed == 0


def test_restore_takes_the_committed_prefix_of_an_earlier_run():
    ledger = Ledger([2, 2, 2, 2], tries=1)

    ledger.restore(3, failed=1, items=(4, 2))

    progress = ledger.progress()
    assert (progress.succeeded, progress.failed, progress.pending) == (2, 1, 1)
    assert (progress.items_succeeded, progress.items_failed) == (4, 2)
    assert ledger.claim("a", 0).index == 3
