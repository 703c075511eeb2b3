"""Master role: one job's agents, retries, thresholds, ordered output, result."""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import Checkpoint
from .errors import EnvironmentBuildError
from .instance import Instance
from .jobfolder import (
    PROCESSED_COLUMNS,
    CsvLog,
    JobFolder,
    LogFile,
    timestamp,
    write_atomic,
)
from .output import OrderedOutput
from .partition import MiniBatch
from .spec import JobSpec, plan_job, scoring_command
from .state import Ledger, MiniBatchLedger, Progress

# Summaries are rewritten at most this often while a job runs.
_PROGRESS_EVERY_S = 1.0
# Makes a job's ledger from its mini-batches' item counts and its tries.
LedgerFactory = Callable[[Sequence[int], int], MiniBatchLedger]


@dataclass(frozen=True)
class JobResult:
    """How a job ended, with counts and, on failure, the cause and the log to open."""

    name: str
    status: str
    mini_batches: int
    mini_batches_succeeded: int
    mini_batches_failed: int
    items_succeeded: int
    items_failed: int
    duration_s: float
    job_dir: Path
    output_path: Path | None
    error: str = ""
    error_log: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    def summary_line(self) -> str:
        line = (
            f"{self.status}: {self.mini_batches_succeeded}/{self.mini_batches}"
            f" mini-batches succeeded ({self.mini_batches_failed} failed), items"
            f" {self.items_succeeded} succeeded, {self.items_failed} failed,"
            f" in {self.duration_s:.2f} s"
        )
        if self.error:
            line += f"; cause: {self.error}"
            if self.error_log:
                line += f" (see {self.error_log})"
        return line


def run_job(
    spec: JobSpec,
    *,
    should_cancel: Callable[[], bool] = lambda: False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    resume: bool = False,
    ledger_factory: LedgerFactory | None = None,
    processes: int | None = None,
) -> JobResult:
    """Run one job to its end and write its whole job folder.

    With `resume`, the job folder of an earlier, unfinished run is reused:
    mini-batches already committed to the output are kept, the rest run.
    `should_cancel` and `on_progress` are called about once a second from
    this thread. `ledger_factory` makes the mini-batch ledger: another one
    lets other nodes claim from it too (see instance.run_instance), and then
    this node runs `processes` scoring processes, not all the job's
    instance_count x max_concurrency_per_instance. Raises SpecError,
    InputError or JobFolderError before anything starts; every later failure
    is written to the job folder and returned as a failed JobResult.
    """
    batches = plan_job(spec)
    size = str(spec.settings.mini_batch_size)
    if resume:
        folder = JobFolder.reopen(spec.job_dir)
        checkpoint = Checkpoint.load(folder.checkpoint)
        checkpoint.check_matches(len(batches), size)
        # Parts not yet in the output are re-run: their counts were not kept.
        for stale in folder.parts_dir.iterdir():
            stale.unlink()
    else:
        folder = JobFolder.create(spec.job_dir)
        checkpoint = Checkpoint(total=len(batches), mini_batch_size=size)
        checkpoint.save(folder.checkpoint)
    orchestrator = Orchestrator(
        spec, folder, batches, checkpoint, ledger_factory, processes
    )
    return orchestrator.run(should_cancel, on_progress)


class Orchestrator:
    """Drives one job: `tick()` does one round of bookkeeping and says if it did any."""

    def __init__(
        self,
        spec: JobSpec,
        folder: JobFolder,
        batches: Sequence[MiniBatch],
        checkpoint: Checkpoint,
        ledger_factory: LedgerFactory | None = None,
        processes: int | None = None,
    ) -> None:
        self.spec = spec
        self.folder = folder
        self.batches = batches
        settings = spec.settings
        self.processes = processes or (
            settings.instance_count * settings.max_concurrency_per_instance
        )
        # The job report's header is written here, once, before any other
        # node can join and append to the report.
        CsvLog(folder.processed_csv, PROCESSED_COLUMNS).close()
        self.ledger = (ledger_factory or Ledger)(
            [b.item_count for b in batches], settings.tries
        )
        self.driver = LogFile(folder.driver_log)
        self.master = LogFile(folder.master_log)
        self.instance: Instance | None = None
        self.started = time.monotonic()
        self.checkpoint = checkpoint
        self.ledger.restore(
            checkpoint.next_index,
            checkpoint.failed,
            (checkpoint.items_succeeded, checkpoint.items_failed),
        )
        self.output = OrderedOutput(
            self.output_path, folder, checkpoint, self.ledger, len(batches)
        )
        self._last_progress = 0.0

    @property
    def output_path(self) -> Path | None:
        if self.spec.settings.output_action != "append_row":
            return None
        return self.folder.output_file(self.spec.settings.output_file_name)

    def run(
        self,
        should_cancel: Callable[[], bool],
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        """Run to the end; whatever goes wrong ends up in the job folder."""
        try:
            return self._run(should_cancel, on_progress)
        except Exception as exc:
            # The engine's own failure boundary: the job folder must still
            # say what happened, and no scoring process may outlive it.
            self.master.write(f"engine error:\n{traceback.format_exc()}")
            cause = f"engine error: {type(exc).__name__}: {exc}"
            return self.finish("failed", cause, self.folder.relative(self.master.path))

    def _run(
        self,
        should_cancel: Callable[[], bool],
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        self._log_start()
        on_progress(self.ledger.progress())
        try:
            command = scoring_command(
                self.spec,
                self.folder,
                self.driver,
                beat=lambda: on_progress(self.ledger.progress()),
            )
        except EnvironmentBuildError as exc:
            log = self.folder.relative(self.folder.environment_log)
            return self.finish("failed", exc.message, log)
        on_progress(self.ledger.progress())
        self.instance = Instance(
            self.spec,
            self.folder,
            self.batches,
            self.ledger,
            command,
            self.processes,
            self.master,
        )
        self.instance.start()
        while True:
            now = time.monotonic()
            seen = self.ledger.generation
            status, error, log = self.tick(now)
            if status:
                return self.finish(status, error, log)
            if now - self._last_progress >= _PROGRESS_EVERY_S:
                self._last_progress = now
                progress = self.ledger.progress()
                self._write_progress(progress, "running")
                on_progress(progress)
                if should_cancel():
                    return self.finish("canceled", "canceled by request")
            self.ledger.wait_for_change(seen, _PROGRESS_EVERY_S)

    def tick(self, now: float) -> tuple[str, str, str]:
        """One round: expire leases, append ready output, check thresholds.

        Returns (final status, cause, log) once the job must end, else ("", "", "").
        """
        for claim in self.ledger.expire(now):
            self.master.write(
                f"mini-batch {claim.index} attempt {claim.attempt} on {claim.agent}"
                " lost: its node stopped reporting; counted as a failed attempt"
            )
        self.output.assemble()
        progress = self.ledger.progress()
        cause = self.ledger.stop_cause
        if cause:
            return ("failed", *cause)
        breach = self._threshold_breach(progress)
        if breach:
            return "failed", breach, self.first_error[1]
        if progress.finished:
            return "completed", "", ""
        return "", "", ""

    def finish(self, status: str, error: str = "", error_log: str = "") -> JobResult:
        """Stop agents, complete the output, write the result files."""
        self.ledger.stop()
        if self.instance is not None:
            self.instance.stop(kill=status != "completed")
        self.output.assemble(final=True)
        self.output.close()
        unassembled = self.checkpoint.next_index < len(self.batches)
        if status == "completed" and unassembled:
            # Every mini-batch finished, yet the output did not take them all:
            # a ledger fault. Kept resumable rather than called complete.
            status = "failed"
            error = (
                f"engine error: the output holds mini-batches 0-"
                f"{self.checkpoint.next_index - 1} of {len(self.batches)} though all"
                " finished; resume the job to write the rest"
            )
            error_log = self.folder.relative(self.master.path)
            self.master.write(error)
        if status == "completed":
            shutil.rmtree(self.folder.parts_dir.parent, ignore_errors=True)
        progress = self.ledger.progress()
        result = JobResult(
            name=self.spec.name,
            status=status,
            mini_batches=progress.total,
            mini_batches_succeeded=progress.succeeded,
            mini_batches_failed=progress.failed,
            items_succeeded=progress.items_succeeded,
            items_failed=progress.items_failed,
            duration_s=time.monotonic() - self.started,
            job_dir=self.folder.root,
            output_path=self.output_path,
            error=error,
            error_log=error_log,
        )
        self._write_result(result, progress)
        return result

    @property
    def first_error(self) -> tuple[str, str]:
        """The job's first failed attempt (what, log); other nodes' from the summary."""
        if self.instance is not None and self.instance.first_error[0]:
            return self.instance.first_error
        try:
            with self.folder.user_error_summary.open(encoding="utf-8") as summary:
                first = summary.readline().rstrip("\n")
        except FileNotFoundError:
            return "", ""
        # "<stamp> <what> (full trace in <log>)", as Instance writes it.
        what, _, log = first.partition(" ")[2].rpartition(" (full trace in ")
        return what, log.removesuffix(")")

    def _threshold_breach(self, progress: Progress) -> str:
        settings = self.spec.settings
        if 0 <= settings.error_threshold < progress.items_failed:
            return (
                f"{progress.items_failed} items failed, more than error_threshold"
                f" {settings.error_threshold}; first error: {self.first_error[0]}"
            )
        if 0 <= settings.mini_batch_error_threshold < progress.failed:
            return (
                f"{progress.failed} mini-batches failed, more than"
                f" mini_batch_error_threshold {settings.mini_batch_error_threshold};"
                f" first error: {self.first_error[0]}"
            )
        return ""

    def _log_start(self) -> None:
        spec, settings = self.spec, self.spec.settings
        items = sum(b.item_count for b in self.batches)
        self.driver.write(
            f"Job {spec.name}: {len(self.batches)} mini-batches, {items} items from"
            f" {spec.input_path} ({spec.input_mode}) on node {spec.node}"
        )
        for key, value in settings.as_dict().items():
            self.driver.write(f"setting {key} = {value}")
        if self.checkpoint.next_index:
            self.driver.write(
                f"Resuming: mini-batches 0-{self.checkpoint.next_index - 1} of"
                f" {len(self.batches)} were committed by an earlier run"
            )
        self.master.write(
            f"Created {len(self.batches)} mini-batches of up to"
            f" {settings.mini_batch_size} from {items} items"
        )
        self._write_progress(self.ledger.progress(), "running")

    def _write_progress(
        self, progress: Progress, status: str, result: JobResult | None = None
    ) -> None:
        elapsed = time.monotonic() - self.started
        lines = [
            f"Job: {self.spec.name}",
            f"Status: {status}",
            f"Updated: {timestamp()}",
            f"Mini-batches created: {progress.total}",
            f"Mini-batches processed: {progress.processed}"
            f" (succeeded {progress.succeeded}, failed {progress.failed})",
            f"Mini-batches in progress: {progress.running},"
            f" pending: {progress.pending}",
            f"Items succeeded: {progress.items_succeeded},"
            f" failed: {progress.items_failed}",
            f"Elapsed: {elapsed:.1f} s",
        ]
        if progress.processed and not progress.finished and status == "running":
            eta = elapsed / progress.processed * (progress.total - progress.processed)
            lines.append(f"ETA: {eta:.1f} s")
        if result is not None:
            lines.append(f"Result: {result.summary_line()}")
            if result.error:
                lines.append(f"Cause: {result.error}")
                lines.append(
                    f"Look at: {result.error_log or 'logs/sys/master_role.txt'}"
                )
        write_atomic(self.folder.progress_overview, "\n".join(lines) + "\n")

    def _write_result(self, result: JobResult, progress: Progress) -> None:
        self._write_progress(progress, result.status, result)
        write_atomic(self.folder.job_result, result.summary_line() + "\n")
        if result.error:
            look_at = result.error_log or "logs/sys/master_role.txt"
            write_atomic(self.folder.job_error, f"{result.error}\nLook at: {look_at}\n")
        self.master.write(f"Job {result.status}: {result.summary_line()}")
        self.driver.write(f"Job {result.status}. {result.summary_line()}")
        for log in (self.driver, self.master):
            log.close()
