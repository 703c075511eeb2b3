"""The two contenders: the engine's run_job and a bare spawn-context process pool."""

from __future__ import annotations

import csv
import multiprocessing
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import IO

from scoring_engine import JobSpec, parse_deployment, plan_job, run_job

from . import data, pool_worker
from .background import BackgroundCpu
from .memory import PeakTreeMemory
from .metrics import RunMetrics
from .workloads import WORKERS, Prepared, Workload

NODE = "bench-node"


def job_spec(workload: Workload, prepared: Prepared, job_dir: Path) -> JobSpec:
    return JobSpec(
        name=f"bench-{workload.name}",
        deployment=parse_deployment(prepared.deployment, data.BENCH_DIR),
        input_path=prepared.input_dir,
        job_dir=job_dir,
        node=NODE,
        env_cache=data.ENV_CACHE,
    )


def run_engine(workload: Workload, prepared: Prepared, run_dir: Path) -> RunMetrics:
    """Time run_job on a fresh job folder; per-batch figures from its job report."""
    job_dir = run_dir / "engine-job"
    spec = job_spec(workload, prepared, job_dir)
    with PeakTreeMemory() as memory, BackgroundCpu() as background:
        started_epoch, started = time.time(), time.perf_counter()
        result = run_job(spec)
        wall = time.perf_counter() - started
    if not result.succeeded:
        raise RuntimeError(
            f"engine job failed: {result.summary_line()}; job folder {job_dir}"
        )
    report = job_dir / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    with open(report, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "succeeded"]
    completions = [
        (_epoch(r["end_time"]), int(r["succeeded_items"]) * workload.rows_per_file)
        for r in rows
    ]
    return RunMetrics(
        contender="engine",
        wall_s=wall,
        rows=workload.rows,
        first_result_s=min(end for end, _ in completions) - started_epoch,
        completions=completions,
        peak_added_mb=memory.added_mb,
        output=job_dir / "outputs" / "predictions.csv",
        batches=result.mini_batches,
        tail_s=started_epoch + wall - max(end for end, _ in completions),
        background_pct=background.pct,
        overhead_ms=[
            (float(r["duration_s"]) - float(r["run_s"]) - float(r["write_s"])) * 1000
            for r in rows
        ],
        run_ms=[float(r["run_s"]) * 1000 for r in rows],
    )


def run_pool(workload: Workload, prepared: Prepared, run_dir: Path) -> RunMetrics:
    """Time a spawn Pool(2) doing the engine's work: the same mini-batches (the
    engine's own partitioning), run() in order via imap, parts appended in order."""
    out_dir = run_dir / "pool"
    parts = out_dir / "parts"
    parts.mkdir(parents=True)
    output = out_dir / "predictions.csv"
    context = multiprocessing.get_context("spawn")
    completions: list[tuple[float, int]] = []
    write_ms: list[float] = []
    run_ms: list[float] = []
    first = 0.0
    spec = job_spec(workload, prepared, run_dir / "unused")
    with PeakTreeMemory() as memory, BackgroundCpu() as background:
        started_epoch, started = time.time(), time.perf_counter()
        # Listing and partitioning are inside the timing, as in run_job.
        batches = plan_job(spec)
        tasks = [
            (b.index, list(b.files), str(parts / f"{b.index:08d}.csv")) for b in batches
        ]
        model_dir = str(prepared.model_dir) if prepared.model_dir else None
        pool = context.Pool(
            WORKERS,
            initializer=pool_worker.init_worker,
            initargs=(str(prepared.script), model_dir),
        )
        try:
            with open(output, "ab") as sink:
                header_written = False
                for index, part, _rows, run_s, write_s, ended in pool.imap(
                    pool_worker.score_batch, tasks
                ):
                    if not completions:
                        first = time.time() - started_epoch
                    header_written = _append(sink, Path(part), header_written)
                    items = len(batches[index].files)
                    completions.append((ended, items * workload.rows_per_file))
                    run_ms.append(run_s * 1000)
                    write_ms.append(write_s * 1000)
            pool.close()
            pool.join()
        finally:
            pool.terminate()
        wall = time.perf_counter() - started
    shutil.rmtree(parts, ignore_errors=True)
    return RunMetrics(
        contender="pool",
        wall_s=wall,
        rows=workload.rows,
        first_result_s=first,
        completions=completions,
        peak_added_mb=memory.added_mb,
        output=output,
        batches=len(batches),
        tail_s=started_epoch + wall - max(end for end, _ in completions),
        background_pct=background.pct,
        run_ms=run_ms,
        write_ms=write_ms,
    )


def _append(sink: IO[bytes], part: Path, header_written: bool) -> bool:
    """Append one part as the orchestrator does: the first part decides the
    header (a blank one, from a list result, means none), then rows only."""
    with open(part, "rb") as source:
        header = source.readline()
        if header.strip() and not header_written:
            sink.write(header)
        shutil.copyfileobj(source, sink, 1 << 20)
    sink.flush()
    part.unlink()
    return True


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()
