"""What one contender's run measured, and the figures derived from it."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunMetrics:
    """One timed run of one contender on one workload."""

    contender: str
    wall_s: float
    rows: int
    first_result_s: float
    # (epoch when the mini-batch's result was back, input rows in it)
    completions: list[tuple[float, int]]
    peak_added_mb: float
    output: Path
    batches: int
    # From the last mini-batch's result to the end of the run (shutdown, last append).
    tail_s: float
    # Share of the machine's CPU other processes took during the run (%).
    background_pct: float
    # Engine only: duration_s - run_s - write_s per mini-batch (job report, ms):
    # what the engine adds besides scoring and writing rows, which the pool
    # does as well.
    overhead_ms: list[float] = field(default_factory=list)
    run_ms: list[float] = field(default_factory=list)
    # Pool only: time to write each part CSV inside the worker (ms).
    write_ms: list[float] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def steady_rows_per_s(self) -> float:
        return steady_throughput(self.completions)


def steady_throughput(
    completions: Sequence[tuple[float, int]], low: float = 0.1, high: float = 0.9
) -> float:
    """Rows/s between the low and high completion marks (by mini-batch count).

    Rows of mini-batches finished after the low mark, up to and including the
    high mark, over the time between the two; NaN when there are too few.
    """
    ordered = sorted(completions)
    n = len(ordered)
    first, last = math.ceil(low * n) - 1, math.ceil(high * n) - 1
    if n < 5 or last <= first:
        return math.nan
    span = ordered[last][0] - ordered[first][0]
    rows = sum(r for _, r in ordered[first + 1 : last + 1])
    return rows / span if span > 0 else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def compare_outputs(a: Path, b: Path) -> tuple[bool, str]:
    """Same bytes line for line? Returns (identical, short description)."""
    lines_a, digest_a = _digest(a)
    lines_b, digest_b = _digest(b)
    if digest_a == digest_b:
        return True, f"{lines_a} lines identical"
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for number, (la, lb) in enumerate(zip(fa, fb, strict=False), start=1):
            if la != lb:
                return False, (
                    f"{lines_a} vs {lines_b} lines; first difference at line"
                    f" {number}: {la[:60]!r} vs {lb[:60]!r}"
                )
    return False, f"{lines_a} vs {lines_b} lines (one is a prefix of the other)"


def _digest(path: Path) -> tuple[int, str]:
    lines = 0
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            digest.update(chunk)
    return lines, digest.hexdigest()
