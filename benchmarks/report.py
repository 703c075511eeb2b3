"""Printing: per-run figures, per-workload comparison against targets, final table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .background import NOISY_PCT
from .metrics import RunMetrics, median, percentile, ratio

# Targets (engine relative to the pool).
STEADY_MIN = 0.9
WALL_MAX = 1.15
WALL_TARGET_WORKLOADS = ("mlflow-2000",)
OVERHEAD_MAX_MS = 2.0
MEMORY_MAX = 1.3
WALL_OVERHEAD_WORKLOADS = ("sleep-400",)


@dataclass
class Summary:
    """One workload's figures over all repeats (medians across repeats)."""

    workload: str
    engine: list[RunMetrics]
    pool: list[RunMetrics]
    outputs_ok: list[bool]

    def figure(self, contender: str, name: str) -> float:
        runs = self.engine if contender == "engine" else self.pool
        return median([getattr(run, name) for run in runs])

    def ratio(self, name: str) -> float:
        return ratio(self.figure("engine", name), self.figure("pool", name))

    @property
    def overhead_ms(self) -> list[float]:
        return [v for run in self.engine for v in run.overhead_ms]

    @property
    def pool_write_ms(self) -> list[float]:
        return [v for run in self.pool for v in run.write_ms]

    @property
    def wall_overhead_ms(self) -> float:
        """(engine wall - pool wall) / mini-batches, in ms."""
        batches = self.engine[0].batches
        wall = self.figure("engine", "wall_s") - self.figure("pool", "wall_s")
        return wall / batches * 1000

    def targets(self) -> list[tuple[str, str, bool]]:
        """(target, measured, met) for every target that applies here."""
        steady = self.ratio("steady_rows_per_s")
        over = median(self.overhead_ms)
        memory = self.ratio("peak_added_mb")
        limit = f"< {OVERHEAD_MAX_MS:g} ms"
        rows = [
            (
                f"steady throughput >= {STEADY_MIN}x",
                f"{steady:.2f}x",
                steady >= STEADY_MIN,
            ),
            (
                f"per-mini-batch overhead (median duration-run-write) {limit}",
                f"{over:.1f} ms",
                over < OVERHEAD_MAX_MS,
            ),
            (f"peak memory <= {MEMORY_MAX}x", f"{memory:.2f}x", memory <= MEMORY_MAX),
        ]
        if self.workload in WALL_TARGET_WORKLOADS:
            wall = self.ratio("wall_s")
            rows.append((f"wall <= {WALL_MAX}x", f"{wall:.2f}x", wall <= WALL_MAX))
        if self.workload in WALL_OVERHEAD_WORKLOADS:
            per = self.wall_overhead_ms
            rows.append(
                (
                    f"per-mini-batch overhead (wall diff / mini-batches) {limit}",
                    f"{per:.1f} ms",
                    per < OVERHEAD_MAX_MS,
                )
            )
        return rows


def run_line(run: RunMetrics) -> str:
    return (
        f"  {run.contender:<6} wall {run.wall_s:7.2f} s"
        f" | {run.rows_per_s:10,.0f} rows/s"
        f" | first result {run.first_result_s:5.2f} s"
        f" | steady {_num(run.steady_rows_per_s):>10} rows/s"
        f" | peak +{run.peak_added_mb:4.0f} MB | tail {run.tail_s:4.2f} s"
        f" | other CPU {run.background_pct:3.0f}%"
        + (" (DISTURBED)" if run.background_pct > NOISY_PCT else "")
    )


def comparison(summary: Summary) -> list[str]:
    lines = [
        f"  engine/pool: wall {summary.ratio('wall_s'):.2f}x,"
        f" steady throughput {summary.ratio('steady_rows_per_s'):.2f}x,"
        f" peak memory {summary.ratio('peak_added_mb'):.2f}x;"
        f" tail (last result to end of run) {summary.figure('engine', 'tail_s'):.2f} s"
        f" vs {summary.figure('pool', 'tail_s'):.2f} s"
    ]
    over = summary.overhead_ms
    write = summary.pool_write_ms
    lines.append(
        f"  engine per-mini-batch overhead (duration_s - run_s - write_s): median"
        f" {median(over):.1f} ms, p95 {percentile(over, 95):.1f} ms"
    )
    lines.append(
        f"    (includes writing the part CSV, which the pool does too: pool median"
        f" {median(write):.1f} ms; net of it ~{median(over) - median(write):.1f} ms)"
    )
    lines.append(
        f"  (engine wall - pool wall) / {summary.engine[0].batches} mini-batches:"
        f" {summary.wall_overhead_ms:.1f} ms"
    )
    for target, measured, met in summary.targets():
        lines.append(f"  target {target}: {measured} {'PASS' if met else 'MISS'}")
    return lines


def table(summaries: Sequence[Summary]) -> list[str]:
    head = (
        f"{'workload':<12} {'who':<6} {'wall s':>7} {'rows/s':>9} {'first s':>7}"
        f" {'steady/s':>9} {'peak+MB':>7} {'tail s':>6} | {'wall x':>6} {'stdy x':>6}"
        f" {'mem x':>5} | {'ovh med/p95 ms':>14} {'dwall/mb':>8} | output"
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        for who in ("engine", "pool"):
            cells = (
                f"{s.workload if who == 'engine' else '':<12} {who:<6}"
                f" {s.figure(who, 'wall_s'):7.2f}"
                f" {_num(s.figure(who, 'rows_per_s')):>9}"
                f" {s.figure(who, 'first_result_s'):7.2f}"
                f" {_num(s.figure(who, 'steady_rows_per_s')):>9}"
                f" {s.figure(who, 'peak_added_mb'):7.0f}"
                f" {s.figure(who, 'tail_s'):6.2f}"
            )
            if who == "engine":
                over = s.overhead_ms
                ovh = f"{median(over):.1f}/{percentile(over, 95):.1f}"
                cells += (
                    f" | {s.ratio('wall_s'):6.2f} {s.ratio('steady_rows_per_s'):6.2f}"
                    f" {s.ratio('peak_added_mb'):5.2f} | {ovh:>14}"
                    f" {s.wall_overhead_ms:8.1f} |"
                    f" {'OK' if all(s.outputs_ok) else 'MISMATCH'}"
                )
            lines.append(cells)
    disturbed = [
        f"{s.workload} {run.contender} #{number + 1} ({run.background_pct:.0f}%)"
        for s in summaries
        for runs in (s.engine, s.pool)
        for number, run in enumerate(runs)
        if run.background_pct > NOISY_PCT
    ]
    if disturbed:
        lines.append(
            f"Disturbed runs (other processes took > {NOISY_PCT:g}% of the CPUs):"
            f" {', '.join(disturbed)}; consider rerunning, e.g. with --repeat 3"
        )
    lines.append("")
    lines.append("Targets (engine vs pool):")
    for s in summaries:
        for target, measured, met in s.targets():
            lines.append(
                f"  {s.workload:<12} {'PASS' if met else 'MISS'}  {target}: {measured}"
            )
    return lines


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"
